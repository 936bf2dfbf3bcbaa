from __future__ import annotations

import json

from tests.support.system import cynode_cli


def test_db_status_rollback_and_reapply(db_url: str, tmp_path) -> None:
    env = {"CYNODE_DATABASE_URL": db_url, "CYNODE_DATA_DIR": str(tmp_path)}
    r = cynode_cli("-o", "json", "db", "status", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 9 and all(row["applied"] for row in rows)
    last = rows[-1]["id"]

    r = cynode_cli("db", "rollback", "-y", env=env)
    assert r.returncode == 0 and f"rolled back {last}" in r.stdout
    rows = json.loads(cynode_cli("-o", "json", "db", "status", env=env).stdout)
    assert [row["id"] for row in rows if not row["applied"]] == [last]

    r = cynode_cli("db", "migrate", env=env)
    assert r.returncode == 0 and f"applied {last}" in r.stdout
    assert cynode_cli("db", "migrate", env=env).stdout.strip() == "nothing to apply"
    r = cynode_cli("db", "status", env=env)
    assert r.returncode == 0 and last in r.stdout and "False" not in r.stdout


def test_db_rollback_asks_first(db_url: str, tmp_path) -> None:
    env = {"CYNODE_DATABASE_URL": db_url, "CYNODE_DATA_DIR": str(tmp_path)}
    r = cynode_cli("db", "rollback", env=env, input="n\n")
    assert r.returncode == 1 and "Aborted" in r.stderr
    rows = json.loads(cynode_cli("-o", "json", "db", "status", env=env).stdout)
    assert all(row["applied"] for row in rows)


def test_db_commands_use_the_embedded_server_without_a_url(tmp_path) -> None:
    env = {"CYNODE_DATA_DIR": str(tmp_path)}
    r = cynode_cli("db", "migrate", env=env)
    assert r.returncode == 0 and "applied 0001_identity" in r.stdout
    assert (tmp_path / "postgres" / "PG_VERSION").exists()


def test_db_bad_config_exits_2(tmp_path) -> None:
    r = cynode_cli("db", "status", env={"CYNODE_DATABASE_URL": "mysql://nope", "CYNODE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and r.stderr.startswith("error: config:") and "db.url" in r.stderr
