"""Embedded PostgreSQL (PyPI pgserver) kept in the data dir and reused across restarts.

Used only when no database.url is configured. The server listens on a Unix socket inside the data dir (no TCP),
and stops when the last cynode process that opened it exits. The orchestrator restarts it if it dies under it
(`postmaster_alive` is what it watches); PostgreSQL's crash recovery replays the WAL, so nothing committed is lost.
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


def restart_embedded(data_dir: Path) -> None:
    """Start the embedded server again after it died under this process. pgserver keeps one object per data dir and
    starts a server only when it creates that object, so ask the object to start one, under pgserver's own
    inter-process lock as it does itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    with server._lock:  # the lock pgserver takes around starting a server (private, no public way in)
        server.ensure_postgres_running()


def postmaster_alive(data_dir: Path) -> bool:
    """Whether the embedded server's postmaster, as its pid file names it, is still running."""
    try:
        pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie or dead entry is not a server
