"""In-memory abuse controls (orchestrator.md §2, §3; in memory in P1): rate limits and the per-handle lockout.

Both are keyed dictionaries pruned as they grow, so a flood of distinct keys cannot exhaust memory.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]
_MAX_KEYS = 100_000


class RateLimiter:
    """A token bucket per key: `per_min` requests a minute, bursts up to `per_min`. per_min=0 turns it off."""

    def __init__(self, per_min: int, clock: Clock = time.monotonic) -> None:
        self.per_min = per_min
        self.rate = per_min / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def hit(self, key: str) -> int:
        """Take one token; returns 0 when allowed, else the seconds to wait (for Retry-After)."""
        if self.per_min <= 0:
            return 0
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.per_min), now))
        tokens = min(float(self.per_min), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_KEYS:
            self._prune(now)
        return 0

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.per_min]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > _MAX_KEYS:  # still too many: forget the oldest entries
            del self._buckets[next(iter(self._buckets))]


class Lockout:
    """`failures` failed logins for one handle within `window_s` lock it for `window_s` (unknown handles too)."""

    def __init__(self, failures: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self.failures = failures
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, handle: str) -> int:
        """0 when the handle may try, else the seconds until the lock ends."""
        until = self._locked_until.get(handle)
        if until is None:
            return 0
        left = until - self.clock()
        if left <= 0:
            del self._locked_until[handle]
            return 0
        return max(1, math.ceil(left))

    def failure(self, handle: str) -> None:
        if self.failures <= 0:
            return
        now = self.clock()
        q = self._fails.setdefault(handle, deque())
        q.append(now)
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) >= self.failures:
            self._locked_until[handle] = now + self.window_s
            q.clear()
        if len(self._fails) > _MAX_KEYS:
            self._prune(now)

    def success(self, handle: str) -> None:
        self._fails.pop(handle, None)

    def _prune(self, now: float) -> None:
        stale = [k for k, q in self._fails.items() if not q or q[-1] <= now - self.window_s]
        for k in stale:
            del self._fails[k]
        for k in [k for k, until in self._locked_until.items() if until <= now]:
            del self._locked_until[k]
