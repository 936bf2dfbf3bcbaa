"""Printing helpers so every benchmark reports the same way: figure, baseline, ratio, goal."""

from __future__ import annotations

import statistics


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
