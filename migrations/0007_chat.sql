-- Chat threads, messages and the chat audit log (agents.md §4, orchestrator.md §10)
-- depends: 0006_sandbox_images

-- session_id has no foreign key: sessions are deferred (schema.md).
CREATE TABLE chat_threads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id),
    project_id uuid NOT NULL REFERENCES projects (id),
    session_id uuid,
    title text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_threads_user_idx ON chat_threads (user_id, updated_at);
CREATE INDEX chat_threads_project_idx ON chat_threads (project_id, updated_at);
CREATE INDEX chat_threads_page_idx ON chat_threads (user_id, created_at DESC, id DESC);

CREATE TABLE chat_messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id uuid NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content text NOT NULL,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chat_messages_thread_idx ON chat_messages (thread_id, created_at, id);

CREATE TABLE chat_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    user_id uuid REFERENCES users (id),
    project_id uuid REFERENCES projects (id),
    model text,
    outcome text NOT NULL,
    error_code text,
    redaction_applied boolean NOT NULL DEFAULT false,
    redaction_kinds jsonb,
    duration_ms int,
    request_id text
);
CREATE INDEX chat_audit_log_created_at_idx ON chat_audit_log (created_at);
CREATE INDEX chat_audit_log_user_id_idx ON chat_audit_log (user_id);
CREATE INDEX chat_audit_log_project_id_idx ON chat_audit_log (project_id);
