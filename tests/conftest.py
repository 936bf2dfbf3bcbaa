"""Shared fixtures: one embedded PostgreSQL per test session, a migrated template, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from cynode.config import Settings, load_settings
from cynode.db import migrate
from cynode.db.pool import Database

TEMPLATE = "cynode_template"


@pytest.fixture(scope="session")
def pg_root_uri() -> Iterator[str]:
    """An embedded PostgreSQL for the whole session (or CYNODE_TEST_DATABASE_URL, a server we may create dbs on)."""
    external = os.environ.get("CYNODE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="cynode-pg-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def _with_db(uri: str, name: str) -> str:
    """Swap the database name in a libpq URI (pgserver's look like postgresql://postgres:@/postgres?host=/dir)."""
    base, _, query = uri.partition("?")
    scheme, _, rest = base.partition("://")
    authority, _, _db = rest.partition("/")
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_template(pg_root_uri: str) -> str:
    with psycopg.connect(pg_root_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = _with_db(pg_root_uri, TEMPLATE)
    migrate.migrate(url)
    return url


@pytest.fixture
def db_url(pg_root_uri: str, pg_template: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test (a copy of the template: about 50 ms)."""
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_root_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield _with_db(pg_root_uri, name)
    finally:
        with psycopg.connect(pg_root_uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_db_url(pg_root_uri: str) -> Iterator[str]:
    """A database with no migrations applied."""
    name = "e_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_root_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_db(pg_root_uri, name)
    finally:
        with psycopg.connect(pg_root_uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(None, {"CYNODE_DATA_DIR": str(tmp_path), "CYNODE_DATABASE_URL": db_url})


@pytest.fixture
async def database(settings: Settings, db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url, settings.db)
    await db.pool.open(wait=True, timeout=10)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture(scope="session")
def model_server() -> Iterator[str]:
    """The built-in model server on its own thread and loop, shared by the whole session (loaded once); tests talk
    to it over real HTTP as the gateway, the PMA and the worker do."""
    import asyncio
    import threading

    from cynode.inference.server import EmbeddedModelServer

    loop = asyncio.new_event_loop()
    server = EmbeddedModelServer(load_settings(None, {}).worker.inference)
    url = loop.run_until_complete(server.start("127.0.0.1:0"))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    yield url
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
