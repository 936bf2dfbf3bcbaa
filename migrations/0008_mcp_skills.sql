-- MCP tool-call audit (no foreign keys, so rows outlive what they name) and skills (mcp.md §11, §12.1)
-- depends: 0007_chat

CREATE TABLE mcp_tool_call_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    task_id uuid,
    project_id uuid,
    run_id uuid,
    job_id uuid,
    subject_type text,
    subject_id uuid,
    agent_type text,
    user_id uuid,
    group_ids jsonb,
    role_names jsonb,
    tool_name text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('allow', 'deny')),
    status text NOT NULL CHECK (status IN ('success', 'error')),
    duration_ms int,
    error_type text,
    request_id text
);
CREATE INDEX mcp_tool_call_audit_log_created_at_idx ON mcp_tool_call_audit_log (created_at);
CREATE INDEX mcp_tool_call_audit_log_task_id_idx ON mcp_tool_call_audit_log (task_id);
CREATE INDEX mcp_tool_call_audit_log_project_id_idx ON mcp_tool_call_audit_log (project_id);
CREATE INDEX mcp_tool_call_audit_log_tool_name_idx ON mcp_tool_call_audit_log (tool_name);
CREATE INDEX mcp_tool_call_audit_log_user_id_idx ON mcp_tool_call_audit_log (user_id);

CREATE TABLE skills (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL DEFAULT 'Untitled skill',
    scope text NOT NULL CHECK (scope IN ('user', 'group', 'project', 'global')),
    scope_id uuid,
    owner_id uuid REFERENCES users (id),
    is_system boolean NOT NULL DEFAULT false,
    content text NOT NULL,
    content_sha256 text NOT NULL,
    size_bytes int NOT NULL,
    version int NOT NULL DEFAULT 1,
    audit_status text NOT NULL DEFAULT 'passed' CHECK (audit_status IN ('passed', 'flagged', 'quarantined')),
    audit_match jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (scope NOT IN ('user', 'global') OR scope_id IS NULL),
    CHECK (scope NOT IN ('group', 'project') OR scope_id IS NOT NULL),
    CHECK (NOT is_system OR (owner_id IS NULL AND scope = 'global')),
    CHECK (is_system OR owner_id IS NOT NULL)
);
CREATE INDEX skills_owner_id_idx ON skills (owner_id);
CREATE INDEX skills_scope_idx ON skills (scope, scope_id);
CREATE INDEX skills_updated_at_idx ON skills (updated_at);

CREATE TABLE skill_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    skill_id uuid NOT NULL REFERENCES skills (id) ON DELETE CASCADE,
    version int NOT NULL,
    name text NOT NULL,
    scope text NOT NULL,
    scope_id uuid,
    content text NOT NULL,
    content_sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid,
    UNIQUE (skill_id, version)
);
