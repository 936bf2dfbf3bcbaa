"""yoyo-migrations over psycopg 3: apply, roll back, list. Migrations are the numbered SQL files in migrations/."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True)
class MigrationState:
    id: str
    applied: bool


def _yoyo_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("database URL must start with postgresql://")
    return "postgresql+psycopg://" + rest


@contextmanager
def _backend(url: str) -> Iterator[tuple[Any, Any]]:
    backend = get_backend(_yoyo_url(url))
    try:
        yield backend, read_migrations(str(MIGRATIONS_DIR))
    finally:
        backend.connection.close()


def migrate(url: str) -> list[str]:
    """Apply every pending migration; returns the ids applied (in order)."""
    with _backend(url) as (backend, migrations), backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    ids = [m.id for m in pending]
    if ids:
        log.info("migrations applied", extra={"migrations": ids})
    return ids


def rollback(url: str, count: int = 1) -> list[str]:
    """Roll back the last `count` applied migrations; returns their ids (newest first)."""
    with _backend(url) as (backend, migrations), backend.lock():
        targets = backend.to_rollback(migrations)[:count]
        backend.rollback_migrations(targets)
    return [m.id for m in targets]


def status(url: str) -> list[MigrationState]:
    with _backend(url) as (backend, migrations):
        return [MigrationState(m.id, bool(backend.is_applied(m))) for m in migrations]
