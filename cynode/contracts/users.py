"""Gateway user bodies (orchestrator.md §3): whoami and the admin user endpoints."""

from __future__ import annotations

from typing import Annotated

import msgspec


class UserCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    handle: Annotated[str, msgspec.Meta(max_length=256)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    roles: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=16)] | None = None

    def __repr__(self) -> str:
        return f"UserCreate(handle={self.handle!r}, password='***')"


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    password: Annotated[str, msgspec.Meta(max_length=1024)]

    def __repr__(self) -> str:
        return "PasswordReset(password='***')"


class UserOut(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    handle: str
    is_active: bool
    roles: list[str]
    created_at: str
    email: str | None = None


class UserActive(msgspec.Struct, frozen=True):
    id: str
    is_active: bool
