"""Gateway-wide input rules on top of the strict msgspec decoding: no NUL characters anywhere (PostgreSQL text and
jsonb cannot store them, so they are refused as 400 instead of failing in the database)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from cynode.errors import FieldError, Invalid
from cynode.http.body import decode_struct, read_json

T = TypeVar("T")


def check_no_nul(value: Any, field: str = "body") -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise Invalid(f"{field}: NUL characters are not allowed", [FieldError(field, "contains a NUL character")])
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_no_nul(getattr(value, name), name if field == "body" else f"{field}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_no_nul(item, f"{field}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_no_nul(k, field)
            check_no_nul(v, f"{field}.{k}")


async def read_body(request: Request[Any, Any, Any], type_: type[T], *, allow_empty: bool = False) -> T:
    """`read_json` (415/400/413) plus the gateway's input rules."""
    body = await read_json(request, type_, allow_empty=allow_empty)
    check_no_nul(body)
    return body


def decode_body(raw: bytes, type_: type[T]) -> T:
    body = decode_struct(raw, type_)
    check_no_nul(body)
    return body
