"""UTF-8 helpers shared by the worker (bounded output) and the orchestrator (bounded model answers)."""

from __future__ import annotations


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding is at most `limit` bytes."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    end = limit
    while end > 0 and data[end] & 0xC0 == 0x80:  # data[end] is the first byte left out; inside a character?
        end -= 1
    return data[:end].decode("utf-8")
