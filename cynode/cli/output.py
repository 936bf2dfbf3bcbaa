"""Rendering for reads: one pretty JSON value on stdout with -o json, rich tables otherwise."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table


def console(obj: Any) -> Console:
    return Console(no_color=bool(getattr(obj, "no_color", False)), soft_wrap=True)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def emit_table(obj: Any, title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]],
               raw: Any = None) -> None:
    if getattr(obj, "json", False):
        emit_json(raw if raw is not None else list(rows))
        return
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    console(obj).print(table)


def emit_more(obj: Any, command: str, page: dict[str, Any]) -> None:
    """After a table: the command that shows the next page, on stderr (not with -o json, where `next_cursor` is in
    the document, nor with --quiet)."""
    cursor = page.get("next_cursor")
    if cursor and not getattr(obj, "json", False) and not getattr(obj, "quiet", False):
        click.echo(f"more: {command} --cursor {cursor}", err=True)


# C0 controls but tab and newline, DEL, and the C1 range (0x9b is a CSI on some terminals).
_UNPRINTABLE = dict.fromkeys((*(c for c in range(0x20) if c not in (0x09, 0x0A)), *range(0x7F, 0xA0)))


def terminal_safe(text: str) -> str:
    """Text from elsewhere (a model's answer) without the control characters that would let it drive the terminal:
    move the cursor over earlier output, retitle the window, write the clipboard."""
    return text.translate(_UNPRINTABLE)
