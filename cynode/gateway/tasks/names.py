"""Task names (orchestrator.md §6.5): normalization, auto-names from the prompt, and the unique suffix."""

from __future__ import annotations

import re
from collections.abc import Iterable

from cynode.errors import FieldError, Invalid
from cynode.ids import canonical_uuid

MAX_NAME_INPUT = 128
MAX_NAME = 64
MAX_AUTO_NAME = 40
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def looks_like_uuid(value: str) -> bool:
    """The one test for "this reference is an id, not a name", used both when naming and when looking up."""
    return canonical_uuid(value) is not None


def is_name(value: str) -> bool:
    """Could this be a stored task name (normalized, at most 64 characters plus a -N suffix)?"""
    return len(value) <= MAX_NAME + 12 and _NAME.fullmatch(value) is not None


def normalize(value: str, limit: int = MAX_NAME) -> str:
    """Lowercase; each run of characters outside [a-z0-9] becomes one '-'; trim '-' at both ends; cut to `limit`."""
    return _NON_ALNUM.sub("-", value.lower()).strip("-")[:limit].strip("-")


def explicit_name(task_name: str) -> str:
    if len(task_name) > MAX_NAME_INPUT:
        raise Invalid(f"task_name: at most {MAX_NAME_INPUT} characters",
                      [FieldError("task_name", f"at most {MAX_NAME_INPUT} characters")])
    name = normalize(task_name)
    if not name:
        raise Invalid("task_name: empty once normalized", [FieldError("task_name", "empty once normalized")])
    if looks_like_uuid(name):
        raise Invalid("task_name: must not be a UUID", [FieldError("task_name", "must not be a UUID")])
    return name


def auto_name(source: str) -> str:
    """The first four words of the prompt (or first command), normalized and cut to 40; else `task`."""
    name = normalize(" ".join(source.split()[:4]), MAX_AUTO_NAME)
    return "task" if not name or looks_like_uuid(name) else name


def unique_name(base: str, taken: Iterable[str]) -> str:
    """`base`, else `base-2`, `base-3`, ... (the first one not taken by the same creator)."""
    used = set(taken)
    if base not in used:
        return base
    n = 2
    while f"{base}-{n}" in used:
        n += 1
    return f"{base}-{n}"
