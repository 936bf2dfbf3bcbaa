"""Helpers every benchmark shares: printing a figure with its baseline, ratio and goal the same way; a free port; a
baseline app run in its own process."""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx


def row(label: str, value: float, unit: str, *, baseline: float | None = None, goal: str = "",
        ratio_note: str = "") -> None:
    text = f"   {label:<54} {value:>10.2f} {unit:<6}"
    if baseline is not None:
        ratio = value / baseline if baseline else float("inf")
        text += f"  baseline {baseline:>9.2f} {unit:<6} ratio {ratio:5.2f}{(' ' + ratio_note) if ratio_note else ''}"
    if goal:
        text += f"  [goal {goal}]"
    print(text, flush=True)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    """A loopback port nothing listens on now, for a baseline server started by a bench."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def python_app(args: list[str], probe: Callable[[], object], timeout_s: float = 30) -> Iterator[None]:
    """`python *args` (a baseline server) running until the block ends; ready once `probe()` stops raising an HTTP
    error, which it may do for `timeout_s`."""
    proc = subprocess.Popen([sys.executable, *args])
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                probe()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)
