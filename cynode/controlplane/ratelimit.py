"""A small in-memory sliding-window limiter (per key), for the few unauthenticated endpoints."""

from __future__ import annotations

import math
import time
from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str, now: float | None = None) -> int:
        """Record a hit; 0 when allowed, else the seconds to wait (for Retry-After)."""
        now = time.monotonic() if now is None else now
        q = self._hits.get(key)
        if q is None:
            if len(self._hits) >= self.max_keys:  # bound memory: forget the stalest keys
                for k in sorted(self._hits, key=lambda k: self._hits[k][-1] if self._hits[k] else 0)[:1000]:
                    del self._hits[k]
            q = self._hits[key] = deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return max(1, math.ceil(q[0] + self.window_s - now))
        q.append(now)
        return 0
