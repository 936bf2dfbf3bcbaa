"""Shared CLI pieces: global flags, exit codes (cli.md), one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_VALIDATION, EXIT_GATEWAY, EXIT_INTERNAL = (
    0, 2, 3, 4, 5, 6, 7, 8,
)


@dataclass
class CliState:
    config_path: str | None = None
    output: str = "table"
    quiet: bool = False
    no_color: bool = False

    @property
    def json(self) -> bool:
        return self.output == "json"


def global_options(f: F) -> F:
    f = click.option("--no-color", is_flag=True, help="Disable colour in table output.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Print less.")(f)
    f = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                     help="Output format for reads.")(f)
    f = click.option("-c", "--config", type=click.Path(dir_okay=False), default=None,
                     help="CLI config file (default ~/.config/cynode/config.toml).")(f)
    return f


def fail(message: str, code: int) -> NoReturn:
    """One clear line on stderr, then the exit code the contract gives."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
