"""Stop sequences over a token stream: text is released as soon as it can no longer be the start of a stop string."""

from __future__ import annotations

from collections.abc import Iterable


class StopScanner:
    """Feed decoded pieces; get back what may be shown now and whether a stop sequence was reached.

    A stop string can span tokens, so the scanner holds back the longest tail of the text that is still a prefix
    of some stop string. Generation ends at the first stop string to be completed (the match that ends earliest;
    of two ending together, the longer), which is what a model emitting one character at a time would hit, so the
    cut does not depend on how the text was split into pieces.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in dict.fromkeys(stops) if s)
        self._held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self._stops:
            return piece
        text = self._held + piece
        # The first occurrence of each stop is also its earliest-ending one.
        hits = [(i + len(s), i) for s in self._stops if (i := text.find(s)) >= 0]
        if hits:
            self._held = ""
            self.stopped = True
            return text[: min(hits)[1]]
        keep = self._partial_tail(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of generation, whatever was held back is plain text."""
        out, self._held = ("" if self.stopped else self._held), ""
        return out

    def _partial_tail(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
