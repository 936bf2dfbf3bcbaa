-- One row per authenticated gateway request and per denial (orchestrator.md §12); never bodies, tokens or prompts
-- depends: 0008_mcp_skills

CREATE TABLE gateway_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    request_id text NOT NULL,
    method text NOT NULL,
    route text NOT NULL,
    user_id uuid,
    subject_type text,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_id text,
    task_id uuid,
    decision text NOT NULL CHECK (decision IN ('allow', 'deny')),
    status_code int NOT NULL,
    roles jsonb NOT NULL DEFAULT '[]'::jsonb,
    group_ids jsonb NOT NULL DEFAULT '[]'::jsonb,
    scope_type text,
    scope_id uuid,
    duration_ms int
);
CREATE INDEX gateway_audit_log_created_at_idx ON gateway_audit_log (created_at);
CREATE INDEX gateway_audit_log_user_id_idx ON gateway_audit_log (user_id, created_at);
CREATE INDEX gateway_audit_log_task_id_idx ON gateway_audit_log (task_id);
