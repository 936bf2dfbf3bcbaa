"""RFC 3339 UTC timestamps with `Z`, as every gateway body carries them (orchestrator.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def rfc3339_opt(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)
