"""Embedded PostgreSQL (PyPI pgserver) kept in the data dir and reused across restarts.

Used only when no database.url is configured. The server listens on a Unix socket inside the data dir (no TCP),
and stops when the last cynode process that opened it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

DB_NAME = "cynode"


def start_embedded(data_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server and return a psycopg URI for the `cynode` database."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI); harmless here
        warnings.simplefilter("ignore")
        import pgserver  # imported late: it is only needed without database.url

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    log.info("embedded PostgreSQL ready", extra={"pgdata": str(pgdata)})
    return str(server.get_uri(DB_NAME))
