"""Gateway auth bodies (orchestrator.md §3, DECISIONS.md 12): login, refresh, logout, personal API tokens."""

from __future__ import annotations

from typing import Annotated

import msgspec

# Generous input bounds: anything longer cannot be a valid handle or password (those rules answer 401, not 400).
HandleIn = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
PasswordIn = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
TokenIn = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    handle: HandleIn
    password: PasswordIn

    def __repr__(self) -> str:
        return f"LoginRequest(handle={self.handle!r}, password='***')"


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    refresh_token: TokenIn

    def __repr__(self) -> str:
        return "RefreshRequest(refresh_token='***')"


class LogoutRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    refresh_token: TokenIn | None = None

    def __repr__(self) -> str:
        return "LogoutRequest(refresh_token='***')"


class TokenPair(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    refresh_expires_in: int

    def __repr__(self) -> str:
        return f"TokenPair(token_type={self.token_type!r}, expires_in={self.expires_in})"


class ApiTokenCreate(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    expires_in_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] | None = None


class ApiTokenCreated(msgspec.Struct, frozen=True, omit_defaults=True):
    """The only time the token text is returned."""

    id: str
    name: str
    token: str
    prefix: str
    created_at: str
    expires_at: str | None = None

    def __repr__(self) -> str:
        return f"ApiTokenCreated(id={self.id!r}, name={self.name!r}, token='***')"


class ApiTokenInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None


class ApiTokenList(msgspec.Struct, frozen=True):
    tokens: list[ApiTokenInfo]
