"""Request bodies decoded at the edge: media type (415), size (413, from litestar's per-route limit), strict msgspec
structs (unknown fields and wrong types give 400 naming the field)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request

from cynode.errors import FieldError, Invalid, UnsupportedMediaType
from cynode.utf8 import decode_json

T = TypeVar("T")

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def validation_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> Invalid:
    """Turn msgspec's message ('Expected `int`, got `str` - at `$.limit`') into a problem with errors[].field."""
    text = str(exc)
    m = _PATH.search(text)
    field = m.group(1) if m else ""
    message = _PATH.sub("", text)
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
        message = "unknown field"
    if not isinstance(exc, msgspec.ValidationError):  # ValidationError subclasses DecodeError
        return Invalid("request body is not valid JSON", [FieldError("body", message)])
    return Invalid(f"{field or 'body'}: {message}", [FieldError(field or "body", message)])


def require_json(request: Request[Any, Any, Any]) -> None:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")


def decode_struct(raw: bytes, type_: type[T]) -> T:
    try:
        return decode_json(raw, type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise validation_error(e) from None


async def read_json(request: Request[Any, Any, Any], type_: type[T], *, allow_empty: bool = False) -> T:
    """Decode the body as `type_` (a msgspec Struct with forbid_unknown_fields)."""
    raw = await request.body()
    if allow_empty and not raw.strip():
        return msgspec.convert({}, type_)
    require_json(request)
    return decode_struct(raw, type_)
