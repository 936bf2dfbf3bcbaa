"""Coalesced point lookups: one query per event-loop turn, answers never older than the request, failures shared
only within their own group."""

from __future__ import annotations

import asyncio

import pytest

from cynode.db.coalesce import Coalescer


class Source:
    """A fake table whose query records each call and can be held open, to observe what a group contains."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.table: dict[str, str] = {"a": "A", "b": "B", "c": "C"}
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(sorted(keys))
        snapshot = dict(self.table)  # what the query "sees" when it starts
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: snapshot[k] for k in keys if k in snapshot}


async def test_lookups_in_one_turn_share_one_query_and_each_gets_its_own_answer() -> None:
    src = Source()
    c = Coalescer(src.fetch)
    got = await asyncio.gather(c.get("a"), c.get("b"), c.get("a"), c.get("missing"))
    assert got == ["A", "B", "A", None]
    assert src.calls == [["a", "b", "missing"]]  # duplicates asked once


async def test_a_lookup_made_while_a_query_runs_waits_for_a_fresh_query() -> None:
    src = Source()
    src.gate = asyncio.Event()
    c = Coalescer(src.fetch)
    first = asyncio.create_task(c.get("a"))
    await asyncio.sleep(0.01)  # the first query has started and is held open
    src.table["a"] = "A2"  # e.g. a session revoked after that query began
    second = asyncio.create_task(c.get("a"))
    await asyncio.sleep(0.01)
    src.gate.set()
    assert await first == "A"
    assert await second == "A2"  # never the answer of a query that started before it asked
    assert src.calls == [["a"], ["a"]]


async def test_a_failed_query_fails_its_group_only() -> None:
    src = Source()
    c = Coalescer(src.fetch)
    src.fail = RuntimeError("database gone")
    results = await asyncio.gather(c.get("a"), c.get("b"), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    src.fail = None
    assert await c.get("a") == "A"


async def test_a_waiter_that_gives_up_does_not_cancel_the_query_for_the_others() -> None:
    src = Source()
    src.gate = asyncio.Event()
    c = Coalescer(src.fetch)
    impatient = asyncio.create_task(c.get("a"))
    patient = asyncio.create_task(c.get("a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    src.gate.set()
    assert await patient == "A"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_large_groups_are_split_into_queries_of_at_most_max_batch_keys() -> None:
    src = Source()
    src.table = {str(i): f"v{i}" for i in range(10)}
    c = Coalescer(src.fetch, max_batch=4)
    got = await asyncio.gather(*(c.get(str(i)) for i in range(10)))
    assert got == [f"v{i}" for i in range(10)]
    assert sorted(len(k) for k in src.calls) == [2, 4, 4]


async def test_while_max_inflight_queries_run_new_lookups_gather_into_one_group() -> None:
    src = Source()
    src.gate = asyncio.Event()
    c = Coalescer(src.fetch, max_inflight=1)
    first = asyncio.create_task(c.get("a"))
    await asyncio.sleep(0.01)  # one query running: the limit
    later = [asyncio.create_task(c.get(k)) for k in ("b", "c", "a")]
    await asyncio.sleep(0.01)
    assert src.calls == [["a"]]  # nothing else went out meanwhile
    src.gate.set()
    assert await first == "A"
    assert [await t for t in later] == ["B", "C", "A"]
    assert src.calls == [["a"], ["a", "b", "c"]]
