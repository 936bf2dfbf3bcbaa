"""Cursor pagination (orchestrator.md §2): `limit` 1-200 (default 50), an opaque base64url cursor of the sort key."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from cynode.errors import FieldError, Invalid
from cynode.utf8 import decode_json

DEFAULT_LIMIT, MAX_LIMIT = 50, 200

# The sort key of lists in (created_at, id) order, as `next_page_cursor` writes it: an aware timestamp and a UUID.
TimeIdKey = tuple[Annotated[datetime, msgspec.Meta(tz=True)], uuid.UUID]


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Invalid(f"limit: must be an integer from 1 to {MAX_LIMIT}",
                      [FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}")])
    return int(raw)


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).rstrip(b"=").decode()


def next_page_cursor(rows: list[dict[str, Any]], limit: int) -> str | None:
    """For a query that fetched `limit + 1` rows in (created_at, id) order: the cursor of the next page, or None."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode_cursor([last["created_at"].isoformat(), str(last["id"])])


def decode_cursor(raw: str, type_: Any) -> Any:
    """Decode a cursor into `type_` (e.g. tuple[datetime, uuid.UUID]); anything else is a 400."""
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return decode_json(data, type_)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise Invalid("cursor: not a valid cursor", [FieldError("cursor", "not a valid cursor")]) from None
