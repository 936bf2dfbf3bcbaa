"""Ollama's `keep_alive`: seconds as a number, or a Go duration string ("5m", "1h30m", "-1")."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

FOREVER = float("inf")


def parse_keep_alive(value: float | str | None, default: float) -> float:
    """Seconds to keep a model loaded after a request: 0 = unload now, FOREVER for any negative value."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = _parse_go_duration(str(value).strip())
    return FOREVER if seconds < 0 else seconds


def _parse_go_duration(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in "+-" else text
    if re.fullmatch(r"\d+(?:\.\d*)?", body):  # a bare number is seconds, as Ollama accepts "300"
        return sign * float(body)
    if not body or _PART.sub("", body):
        raise ValueError(f"invalid duration {text!r} (use seconds or e.g. 5m, 1h30m, -1)")
    return sign * sum(float(n) * _SECONDS[unit] for n, unit in _PART.findall(body))
