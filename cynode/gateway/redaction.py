"""Secret redaction for chat (agents.md §3.9): every message content is redacted before it is stored, logged or sent
to a model, and assistant output before it is stored. A match becomes the literal `SECRET_REDACTED`; only the kinds
found (api_key, token, password, private_key) are kept, never the original text.

Private key blocks are removed in a first pass (so a `name: value` rule cannot eat the BEGIN line and leave the key
body behind), then one combined pass handles the rest: at each position the earliest alternative wins, so
`api_key=sk-...` is one api_key match and `Bearer eyJ...` one token match. A value that already is the placeholder is
left alone and not counted, so redacting twice changes nothing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

PLACEHOLDER = "SECRET_REDACTED"
KINDS = ("api_key", "password", "private_key", "token")

# Texts above this size are redacted on a worker thread, so a 10 MiB body does not stall the event loop.
THREAD_THRESHOLD = 64 * 1024

_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*-----|.*\Z)", re.DOTALL)

_NAMES = r"(?i:api[_-]?key|secret|password|token)"
# A value never starts a `name: value` of its own ("Bearer password: x" must lose x, not the word "password:"),
# and "Bearer " in front of a value belongs to it ("token: Bearer x" must lose x).
_NOT_A_NAME = rf"""(?!{_NAMES}["']?\s*[:=])"""
_BEARER = r"(?i:bearer)"
# <value> of the `name: value` rules: a quoted string or a run of non-space characters.
_VALUE = (rf"""(?P<{{g}}q>["'])?{_NOT_A_NAME}"""
          rf"""(?P<{{g}}v>(?({{g}}q)[^"'\r\n]*|(?:{_BEARER}\s+)?\S+))(?({{g}}q)(?P={{g}}q))""")


def _named(group: str, name: str) -> str:
    # The name may be closed by a quote (JSON: "password": "x"); the separator is ':' or '='.
    value = _VALUE.replace("{g}", group)
    return rf"(?P<{group}n>{name})(?P<{group}c>[\"']?)\s*[:=]\s*{value}"


_RULES: list[tuple[str, str, str]] = [
    # (group, kind, pattern); order is priority at one position
    ("ak", "api_key", _named("ak", r"(?i:api[_-]?key|secret)")),
    ("pw", "password", _named("pw", r"(?i:password)")),
    ("tk", "token", _named("tk", r"(?i:token)")),
    ("br", "token", rf"(?P<brn>{_BEARER})(?:\s+{_BEARER})*\s+{_NOT_A_NAME}(?P<brv>[^\s\"',;]+)"),
    ("sk", "api_key", r"sk-[A-Za-z0-9._-]{20,}"),
    ("aws", "api_key", r"AKIA[0-9A-Z]{16}"),
    ("gh", "token", r"gh[pousr]_[A-Za-z0-9]{36,}"),
    ("sl", "token", r"xox[abprs]-[A-Za-z0-9-]{10,}"),
    ("jwt", "token", r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
]
_KIND = {group: kind for group, kind, _ in _RULES}
_COMBINED = re.compile("|".join(f"(?P<{g}>{p})" for g, _, p in _RULES))
_SHAPED = re.compile("|".join(f"(?P<{g}>{p})" for g, _, p in _RULES[4:]))  # secrets known by their shape alone


@dataclass(frozen=True, slots=True)
class Redacted:
    text: str
    kinds: tuple[str, ...]  # sorted, de-duplicated

    @property
    def applied(self) -> bool:
        return bool(self.kinds)


def redact(text: str) -> Redacted:
    """`text` with every secret replaced by SECRET_REDACTED, and the kinds found."""
    kinds: set[str] = set()

    def block(_m: re.Match[str]) -> str:
        kinds.add("private_key")
        return PLACEHOLDER

    if "PRIVATE KEY-----" in text:
        text = _PRIVATE_KEY.sub(block, text)

    def one(m: re.Match[str]) -> str:
        group = m.lastgroup or ""
        whole = m.group(0)
        if group in ("ak", "pw", "tk"):
            quote = m.group(group + "q") or ""
            if m.group(group + "v") in (PLACEHOLDER, ""):
                return whole
            kinds.add(_KIND[group])
            return f"{m.group(group + 'n')}{m.group(group + 'c')}: {quote}{PLACEHOLDER}{quote}"
        if group == "br":
            value = m.group("brv")
            if value == PLACEHOLDER:
                return whole
            shaped = _SHAPED.fullmatch(value)  # "Bearer sk-..." is an api_key
            kinds.add(_KIND[shaped.lastgroup or ""] if shaped else "token")
            return f"{m.group('brn')} {PLACEHOLDER}"
        kinds.add(_KIND[group])
        return PLACEHOLDER

    text = _COMBINED.sub(one, text)
    return Redacted(text, tuple(sorted(kinds)))


async def redact_async(text: str) -> Redacted:
    """`redact`, on a worker thread for large texts."""
    if len(text) > THREAD_THRESHOLD:
        return await asyncio.to_thread(redact, text)
    return redact(text)


async def redact_all(texts: list[str]) -> list[Redacted]:
    """`redact` for each text, on one worker thread when they are large together."""
    if sum(len(t) for t in texts) > THREAD_THRESHOLD:
        return await asyncio.to_thread(lambda: [redact(t) for t in texts])
    return [redact(t) for t in texts]


def merge_kinds(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(sorted({k for g in groups for k in g}))
