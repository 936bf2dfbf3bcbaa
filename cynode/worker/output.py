"""Bounded capture of a job's stdout/stderr and UTF-8-safe truncation (worker.md §5.5).

A stream keeps at most `limit + LOOKAHEAD` raw bytes however much a job prints and only counts the rest.  The result
is the head of the output decoded as UTF-8 (invalid bytes become U+FFFD), cut at a character boundary so that it is
valid UTF-8 of at most `limit` bytes; `truncated` is true iff that text is not the whole decoded output.

Why a small look-ahead is enough: every decoded character encodes to at least as many bytes as it consumed (a valid
character re-encodes to its own bytes; an invalid run of 1-3 bytes becomes U+FFFD, 3 bytes), so a text of at most
`limit` bytes comes from the first `limit` raw bytes.  The only character whose decoding needs bytes past the kept
head is a sequence cut off there; kept bytes beyond `limit` prove such a cut-off sequence cannot fit.  One byte would
do; the spec's 3 is kept.
"""

from __future__ import annotations

import codecs

from cynode.utf8 import cut_utf8

LOOKAHEAD = 3


class BoundedCapture:
    """One output stream: feed() chunks as they arrive, result() once the stream has ended."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.total = 0  # every byte seen, kept or not
        self._head = bytearray()

    def feed(self, chunk: bytes | memoryview) -> None:
        self.total += len(chunk)
        room = self.limit + LOOKAHEAD - len(self._head)
        if room > 0:
            self._head += chunk[:room]

    def result(self) -> tuple[str, bool]:
        """(text, truncated)."""
        complete = self.total == len(self._head)
        # Not final when bytes were dropped: a sequence cut by the buffer end is left pending instead of becoming
        # U+FFFD; it starts at or after raw offset `limit`, so it can never be part of the text anyway.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        decoded = decoder.decode(bytes(self._head), final=complete)
        text = cut_utf8(decoded, self.limit)
        return text, not (complete and text == decoded)
