"""UUID references as they arrive in paths and tokens: one canonical text form, parsed cheaply on hot paths."""

from __future__ import annotations

import re
import uuid

_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: object) -> str | None:
    """`value` as lowercase hyphenated UUID text (any form `uuid.UUID` accepts), or None when it is not a UUID."""
    if isinstance(value, str) and _CANONICAL.fullmatch(value):  # the form we hand out: no object needed
        return value
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None
