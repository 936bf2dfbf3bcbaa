"""Handler parameter types shared by the gateway routes."""

from __future__ import annotations

from typing import TypeAlias

from litestar.params import FromPath

PathStr: TypeAlias = FromPath[str]
