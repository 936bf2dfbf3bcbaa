"""UTF-8 helpers: bounded text (the worker's output, the orchestrator's model answers) and JSON from other processes.

`decode_json` is how every JSON body we did not write ourselves is decoded (requests, and answers from workers,
model servers and the PMA). msgspec raises UnicodeDecodeError, not msgspec.DecodeError, when a JSON string holds
bytes that are not UTF-8; callers map DecodeError to "bad input", so without this such a body would surface as an
internal error instead of a 400 (or as an untyped exception in a client).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding is at most `limit` bytes."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # data[end] is the first byte left out; inside a character?
        end -= 1
    return data[:end].decode("utf-8")


@overload
def decode_json(raw: bytes) -> Any: ...


@overload
def decode_json(raw: bytes, type_: type[T]) -> T: ...


def decode_json(raw: bytes, type_: Any = Any) -> Any:
    """msgspec.json.decode, with bytes that are not UTF-8 reported as msgspec.DecodeError like any malformed JSON."""
    try:
        return msgspec.json.decode(raw, type=type_)
    except UnicodeDecodeError as e:
        raise msgspec.DecodeError(f"JSON is malformed: invalid UTF-8 (byte {e.start})") from None
