"""System settings bodies (orchestrator.md §11): admin-only, versioned, audited key/value pairs."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class SettingPut(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    value: Any
    value_type: str | None = None
    expected_version: Annotated[int, msgspec.Meta(ge=0)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class SettingOut(msgspec.Struct, frozen=True):
    key: str
    value: Any
    value_type: str
    version: int
    updated_at: str
    updated_by: str


class SettingsList(msgspec.Struct, frozen=True, omit_defaults=True):
    settings: list[SettingOut]
    next_cursor: str | None = None


class SettingWritten(msgspec.Struct, frozen=True):
    key: str
    version: int


class SettingDeleted(msgspec.Struct, frozen=True):
    key: str
    deleted: bool
