"""Point lookups that arrive together are answered by one query.

The gateway checks the caller's session and reads a row on every request. Under load many requests need such a
lookup in the same event-loop turn; `Coalescer.get` parks each one on a future, and at the end of the turn one
`fetch(keys)` query answers the whole group (or, while `max_inflight` queries run, as soon as one of them ends). A
lone request waits for nothing (its query goes out on the next turn).

Freshness is unchanged from a query per request: a group is only ever closed before its query starts, so every
answer comes from a query that began after the request asked. Nothing is cached; a session revoked before a
request arrives is seen as revoked by that request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], *, max_batch: int = 256,
                 max_inflight: int = 2) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        # With this many queries running, new lookups wait for one to finish and then go out together: under load
        # the groups grow instead of the number of queries.
        self._max_inflight = max_inflight
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        """The value for `key` from a query that starts after this call, or None when there is none."""
        fut: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(fut)
        self._kick()
        return await fut

    def _kick(self) -> None:
        if self._waiting and not self._scheduled and len(self._running) < self._max_inflight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False
        keys = list(self._waiting)[: self._max_batch]
        group = {k: self._waiting.pop(k) for k in keys}
        # The query runs as its own task, so a waiter that gives up (timeout, disconnect) cannot cancel it for the
        # others.
        task = asyncio.get_running_loop().create_task(self._answer(group))
        self._running.add(task)
        task.add_done_callback(self._done)
        self._kick()  # more than max_batch waiting: the rest go out now too, while there is room

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._kick()

    async def _answer(self, group: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(group))
        except asyncio.CancelledError:  # shutting down
            for futs in group.values():
                for f in futs:
                    f.cancel()
            raise
        except Exception as e:  # every waiter of this group sees the failure; later groups start afresh
            for futs in group.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(e)
            return
        for key, futs in group.items():
            value = found.get(key)
            for f in futs:
                if not f.done():
                    f.set_result(value)
