"""Chat concurrency (agents.md §3.10): at most `[chat] max_concurrent_per_user` completions in flight per user (else
429) and `[chat] max_inflight` in this gateway process (else 503 `cynodeai_overloaded`). Counted per process: each
gateway replica enforces its own share."""

from __future__ import annotations

from cynode.gateway.chat import errors


class Slot:
    """One admitted request; `release()` is idempotent."""

    __slots__ = ("_limits", "_user_id")

    def __init__(self, limits: ChatLimits, user_id: str) -> None:
        self._limits: ChatLimits | None = limits
        self._user_id = user_id

    def release(self) -> None:
        if self._limits is not None:
            self._limits._release(self._user_id)
            self._limits = None


class ChatLimits:
    def __init__(self, per_user: int, inflight: int) -> None:
        self.per_user = per_user
        self.inflight = inflight
        self.total = 0
        self.by_user: dict[str, int] = {}

    def admit(self, user_id: str) -> Slot:
        mine = self.by_user.get(user_id, 0)
        if self.per_user > 0 and mine >= self.per_user:
            raise errors.rate_limited()
        if self.inflight > 0 and self.total >= self.inflight:
            raise errors.overloaded()
        self.by_user[user_id] = mine + 1
        self.total += 1
        return Slot(self, user_id)

    def _release(self, user_id: str) -> None:
        self.total -= 1
        left = self.by_user.get(user_id, 1) - 1
        if left > 0:
            self.by_user[user_id] = left
        else:
            self.by_user.pop(user_id, None)
