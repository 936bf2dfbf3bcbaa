"""SQL for identity: users, credentials, sessions, personal API tokens, role bindings, default projects, auth audit."""

from __future__ import annotations

# -- the per-request principal (session or token, user, groups, system roles: one round trip) ----------------------

# Both principal queries end the same way, per row of `me` (`uid`: the user id as uuid, for the joins): the user's
# active groups, and the system roles held directly or through one of those groups.
_PRINCIPAL_TAIL = """)
SELECT me.*,
    ARRAY(SELECT m.group_id::text FROM group_memberships m JOIN groups g ON g.id = m.group_id
          WHERE m.user_id = me.uid AND m.is_active AND g.is_active ORDER BY 1) AS group_ids,
    ARRAY(SELECT DISTINCT r.name FROM role_bindings b JOIN roles r ON r.id = b.role_id
          WHERE b.is_active AND b.scope_type = 'system'
            AND ((b.subject_type = 'user' AND b.subject_id = me.uid)
                 OR (b.subject_type = 'group' AND b.subject_id IN (
                     SELECT m.group_id FROM group_memberships m JOIN groups g ON g.id = m.group_id
                     WHERE m.user_id = me.uid AND m.is_active AND g.is_active)))
          ORDER BY 1) AS roles
FROM me
"""

# Many sessions at once (the gateway coalesces the checks of concurrent requests): one row per live session.
PRINCIPALS_BY_SESSIONS = """
WITH me AS (
    SELECT s.id::text AS session_id, u.id AS uid, u.id::text AS user_id, u.handle
    FROM refresh_sessions s JOIN users u ON u.id = s.user_id
    WHERE s.id = ANY(%(sids)s::uuid[]) AND s.is_active AND s.expires_at > now() AND u.is_active
""" + _PRINCIPAL_TAIL  # noqa: S608 - constants joined, no input

# last_used_at is written at most once a minute per token, so a busy token does not write on every request.
PRINCIPAL_BY_API_TOKEN = """
WITH me AS (
    SELECT u.id AS uid, u.id::text AS user_id, u.handle, t.id::text AS token_id
    FROM api_tokens t JOIN users u ON u.id = t.user_id
    WHERE t.token_hash = %(hash)s AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
      AND u.is_active
), touch AS (
    UPDATE api_tokens SET last_used_at = now()
    WHERE id = (SELECT token_id::uuid FROM me)
      AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')
""" + _PRINCIPAL_TAIL  # noqa: S608 - constants joined, no input

# -- users and credentials -----------------------------------------------------------------------------------------

USER_FOR_LOGIN = """
SELECT u.id::text AS id, u.handle, u.is_active, c.password_hash, c.hash_alg
FROM users u LEFT JOIN password_credentials c ON c.user_id = u.id
WHERE u.handle = %(handle)s
"""

USER_BY_ID = """
SELECT id::text AS id, handle, email, is_active, created_at FROM users WHERE id = %(id)s
"""

USER_BY_HANDLE = """
SELECT id::text AS id, handle, email, is_active, created_at FROM users WHERE handle = %(handle)s
"""

INSERT_USER = """
INSERT INTO users (handle, email, is_active) VALUES (%(handle)s, %(email)s, %(is_active)s)
RETURNING id::text AS id, handle, email, is_active, created_at
"""

# The system user is created idempotently at every start (and concurrent starts agree).
ENSURE_USER = """
INSERT INTO users (handle, is_active) VALUES (%(handle)s, %(is_active)s)
ON CONFLICT (handle) DO NOTHING
"""

SET_USER_ACTIVE = """
UPDATE users SET is_active = %(active)s, updated_at = now() WHERE id = %(id)s
RETURNING id::text AS id, is_active
"""

UPSERT_CREDENTIAL = """
INSERT INTO password_credentials (user_id, password_hash, hash_alg) VALUES (%(user_id)s, %(hash)s, %(alg)s)
ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, hash_alg = EXCLUDED.hash_alg,
    updated_at = now()
"""

# -- roles and bindings ----------------------------------------------------------------------------------------------

ROLE_NAMES = "SELECT name FROM roles WHERE name = ANY(%(names)s)"

BIND_SYSTEM_ROLES = """
INSERT INTO role_bindings (subject_type, subject_id, role_id, scope_type, scope_id, updated_by)
SELECT 'user', %(user_id)s, r.id, 'system', NULL, %(by)s FROM roles r WHERE r.name = ANY(%(names)s)
ON CONFLICT DO NOTHING
"""

USER_SYSTEM_ROLES = """
SELECT DISTINCT r.name FROM role_bindings b JOIN roles r ON r.id = b.role_id
WHERE b.is_active AND b.scope_type = 'system'
  AND ((b.subject_type = 'user' AND b.subject_id = %(user_id)s)
       OR (b.subject_type = 'group' AND b.subject_id IN (
            SELECT m.group_id FROM group_memberships m JOIN groups g ON g.id = m.group_id
            WHERE m.user_id = %(user_id)s AND m.is_active AND g.is_active)))
ORDER BY 1
"""

ACTIVE_ADMIN_EXISTS = """
SELECT EXISTS (
    SELECT 1 FROM role_bindings b JOIN roles r ON r.id = b.role_id JOIN users u ON u.id = b.subject_id
    WHERE b.subject_type = 'user' AND b.is_active AND b.scope_type = 'system' AND r.name IN ('owner', 'admin')
      AND u.is_active
) AS present
"""

# Serialises concurrent first starts so exactly one initial admin is created.
BOOTSTRAP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('cynode.bootstrap.admin'))"

# -- default projects (orchestrator.md §5) ---------------------------------------------------------------------------

GET_OR_CREATE_PROJECT = """
WITH ins AS (
    INSERT INTO projects (slug, display_name) VALUES (%(slug)s, %(display_name)s)
    ON CONFLICT (slug) DO NOTHING
    RETURNING id
)
SELECT id::text AS id, true AS created FROM ins
UNION ALL
SELECT id::text AS id, false AS created FROM projects WHERE slug = %(slug)s
LIMIT 1
"""

BIND_PROJECT_OWNER = """
INSERT INTO role_bindings (subject_type, subject_id, role_id, scope_type, scope_id)
SELECT 'user', %(user_id)s, r.id, 'project', %(project_id)s FROM roles r WHERE r.name = 'owner'
ON CONFLICT DO NOTHING
"""

ACCESSIBLE_PROJECT = """
SELECT p.id::text AS id FROM projects p
WHERE p.id = %(project_id)s AND p.is_active AND (
    %(is_admin)s
    OR p.slug = 'default-' || %(user_id)s::uuid::text
    OR EXISTS (
        SELECT 1 FROM role_bindings b
        WHERE b.is_active AND b.scope_type = 'project' AND b.scope_id = p.id
          AND ((b.subject_type = 'user' AND b.subject_id = %(user_id)s::uuid)
               OR (b.subject_type = 'group' AND b.subject_id = ANY(%(group_ids)s::uuid[])))))
"""

# -- refresh sessions ------------------------------------------------------------------------------------------------

INSERT_SESSION = """
INSERT INTO refresh_sessions (user_id, refresh_token_hash, family_id, expires_at)
VALUES (%(user_id)s, %(hash)s, %(family_id)s, now() + make_interval(secs => %(ttl_s)s))
RETURNING id::text AS id
"""

SESSION_BY_HASH_FOR_UPDATE = """
SELECT s.id::text AS id, s.user_id::text AS user_id, s.family_id::text AS family_id, s.is_active,
    s.rotated_at IS NOT NULL AS rotated, s.expires_at > now() AS unexpired, u.handle, u.is_active AS user_active
FROM refresh_sessions s JOIN users u ON u.id = s.user_id
WHERE s.refresh_token_hash = %(hash)s
FOR UPDATE OF s
"""

ROTATE_SESSION = """
UPDATE refresh_sessions SET is_active = false, rotated_at = now(), last_used_at = now(), updated_at = now()
WHERE id = %(id)s
"""

REVOKE_USER_SESSIONS = """
UPDATE refresh_sessions SET is_active = false, updated_at = now() WHERE user_id = %(user_id)s AND is_active
"""

END_SESSION = """
UPDATE refresh_sessions SET is_active = false, updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s AND is_active
"""

END_SESSION_BY_HASH = """
UPDATE refresh_sessions SET is_active = false, updated_at = now()
WHERE refresh_token_hash = %(hash)s AND user_id = %(user_id)s AND is_active
"""

# -- personal API tokens ---------------------------------------------------------------------------------------------

INSERT_API_TOKEN = """
INSERT INTO api_tokens (user_id, name, token_hash, prefix, expires_at)
VALUES (%(user_id)s, %(name)s, %(hash)s, %(prefix)s,
        CASE WHEN %(days)s::int IS NULL THEN NULL ELSE now() + make_interval(days => %(days)s::int) END)
RETURNING id::text AS id, name, prefix, created_at, expires_at
"""

LIST_API_TOKENS = """
SELECT id::text AS id, name, prefix, created_at, last_used_at, expires_at, revoked_at
FROM api_tokens WHERE user_id = %(user_id)s ORDER BY created_at DESC, id DESC
"""

REVOKE_API_TOKEN = """
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING id
"""

# -- audit -----------------------------------------------------------------------------------------------------------

INSERT_AUTH_AUDIT = """
INSERT INTO auth_audit_log (event_type, user_id, subject_handle, success, ip_address, user_agent, reason, request_id)
VALUES (%(event_type)s, %(user_id)s, %(subject_handle)s, %(success)s, %(ip)s::inet, %(user_agent)s, %(reason)s,
        %(request_id)s)
"""
