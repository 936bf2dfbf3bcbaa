-- System settings and preferences, each with its audit table (orchestrator.md §11)
-- depends: 0003_tasks_nodes

CREATE TABLE system_settings (
    key text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 256),
    value jsonb NOT NULL,
    value_type text NOT NULL CHECK (value_type IN ('string', 'number', 'boolean', 'object', 'array')),
    version int NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
CREATE INDEX system_settings_updated_at_idx ON system_settings (updated_at);

CREATE TABLE system_settings_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key text NOT NULL,
    old_value jsonb,
    new_value jsonb,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason text
);
CREATE INDEX system_settings_audit_log_key_idx ON system_settings_audit_log (key);
CREATE INDEX system_settings_audit_log_changed_at_idx ON system_settings_audit_log (changed_at);

CREATE TABLE preference_entries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope_type text NOT NULL CHECK (scope_type IN ('system', 'user', 'group', 'project', 'task')),
    scope_id uuid,
    key text NOT NULL,
    value jsonb,
    value_type text NOT NULL,
    version int NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL,
    CHECK ((scope_type = 'system') = (scope_id IS NULL))
);
CREATE UNIQUE INDEX preference_entries_scope_key ON preference_entries
    (scope_type, coalesce(scope_id, '00000000-0000-0000-0000-000000000000'::uuid), key);
CREATE INDEX preference_entries_scope_idx ON preference_entries (scope_type, scope_id);
CREATE INDEX preference_entries_key_idx ON preference_entries (key);

CREATE TABLE preference_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    entry_id uuid NOT NULL REFERENCES preference_entries (id) ON DELETE CASCADE,
    old_value jsonb,
    new_value jsonb,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    reason text
);
CREATE INDEX preference_audit_log_entry_id_idx ON preference_audit_log (entry_id);
CREATE INDEX preference_audit_log_changed_at_idx ON preference_audit_log (changed_at);
