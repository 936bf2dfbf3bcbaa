from __future__ import annotations

import psycopg

from cynode.db import migrate

# Every table the schema inventory and the spec additions name (runs, sessions and vector storage are deferred).
EXPECTED_TABLES = {
    "users", "password_credentials", "refresh_sessions", "api_tokens", "auth_audit_log",
    "projects", "project_plans", "project_plan_revisions", "project_git_repos", "groups", "group_memberships",
    "roles", "role_bindings", "access_control_rules", "access_control_audit_log",
    "personas", "nodes", "node_capabilities", "tasks", "task_dependencies", "jobs", "task_artifacts",
    "idempotency_keys", "workflow_checkpoints", "task_workflow_leases",
    "system_settings", "system_settings_audit_log", "preference_entries", "preference_audit_log",
    "api_credentials", "api_credential_audit_log", "api_egress_call_log", "web_fetch_audit_log",
    "models", "model_versions", "model_artifacts", "node_model_availability", "model_management_audit_log",
    "model_routing_decisions", "sandbox_images", "sandbox_image_versions", "node_sandbox_image_availability",
    "chat_threads", "chat_messages", "chat_audit_log", "mcp_tool_call_audit_log", "skills", "skill_versions",
    "gateway_audit_log",
}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows if not r[0].startswith(("_yoyo", "yoyo"))}


def test_full_schema_applies_on_an_empty_database(empty_db_url: str) -> None:
    applied = migrate.migrate(empty_db_url)
    assert applied == sorted(applied) and len(applied) >= 9
    assert EXPECTED_TABLES <= _tables(empty_db_url)
    assert all(s.applied for s in migrate.status(empty_db_url))
    assert migrate.migrate(empty_db_url) == []  # idempotent


def test_rollback_last_then_reapply(db_url: str) -> None:
    before = migrate.status(db_url)
    last = before[-1].id
    assert migrate.rollback(db_url) == [last]
    after = {s.id: s.applied for s in migrate.status(db_url)}
    assert after[last] is False and all(v for k, v in after.items() if k != last)
    assert migrate.migrate(db_url) == [last]
    assert all(s.applied for s in migrate.status(db_url))


def test_every_migration_rolls_back_cleanly(db_url: str) -> None:
    n = len(migrate.status(db_url))
    rolled = migrate.rollback(db_url, count=n)
    assert len(rolled) == n and rolled == sorted(rolled, reverse=True)
    assert _tables(db_url) == set()
    migrate.migrate(db_url)
    assert EXPECTED_TABLES <= _tables(db_url)


def test_roles_are_seeded(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM roles")}
    assert names == {"owner", "admin", "operator", "member", "viewer"}


def test_task_status_and_closed_move_together(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        uid = conn.execute("INSERT INTO users (handle) VALUES ('a') RETURNING id").fetchone()[0]
        pid = conn.execute("INSERT INTO projects (slug, display_name) VALUES ('p', 'p') RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO tasks (created_by, project_id, task_name) VALUES (%s, %s, 't')", (uid, pid))
        try:
            conn.execute("UPDATE tasks SET status = 'completed'")  # closed not set with it
            raise AssertionError("the check constraint should refuse status without closed")
        except psycopg.errors.CheckViolation:
            conn.rollback()
