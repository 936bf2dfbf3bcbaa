-- Personas, nodes, tasks, jobs, artifacts, idempotency, workflow checkpoints and leases (schema.md, orchestrator.md §6-§9)
-- depends: 0002_projects_rbac

CREATE TABLE personas (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title text NOT NULL,
    description text NOT NULL,
    scope_type text,
    scope_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid REFERENCES users (id)
);
CREATE INDEX personas_scope_idx ON personas (scope_type, scope_id);
CREATE INDEX personas_created_at_idx ON personas (created_at);

CREATE TABLE nodes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    node_slug text NOT NULL UNIQUE,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'drained')),
    config_version text,
    worker_api_target_url text,
    worker_api_bearer_token text,
    config_ack_at timestamptz,
    config_ack_status text,
    config_ack_error text,
    last_seen_at timestamptz,
    last_capability_at timestamptz,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX nodes_status_idx ON nodes (status);
CREATE INDEX nodes_last_seen_at_idx ON nodes (last_seen_at);

CREATE TABLE node_capabilities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    node_id uuid NOT NULL UNIQUE REFERENCES nodes (id) ON DELETE CASCADE,
    reported_at timestamptz NOT NULL,
    capability_hash text NOT NULL,
    capability_snapshot jsonb NOT NULL
);

CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_by uuid NOT NULL REFERENCES users (id),
    project_id uuid NOT NULL REFERENCES projects (id),
    plan_id uuid REFERENCES project_plans (id),
    task_name text NOT NULL,
    input_mode text NOT NULL DEFAULT 'prompt' CHECK (input_mode IN ('prompt', 'script', 'commands')),
    prompt text,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'canceled', 'superseded')),
    closed boolean NOT NULL DEFAULT false,
    description text,
    acceptance_criteria jsonb,
    summary text,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (closed = (status IN ('completed', 'failed', 'canceled', 'superseded'))),
    UNIQUE (created_by, task_name)
);
CREATE INDEX tasks_created_by_page_idx ON tasks (created_by, created_at DESC, id DESC);
CREATE INDEX tasks_page_idx ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_project_id_idx ON tasks (project_id);
CREATE INDEX tasks_plan_id_idx ON tasks (plan_id);
CREATE INDEX tasks_status_idx ON tasks (status);
CREATE INDEX tasks_closed_idx ON tasks (closed);

CREATE TABLE task_dependencies (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id),
    depends_on_task_id uuid NOT NULL REFERENCES tasks (id),
    UNIQUE (task_id, depends_on_task_id),
    CHECK (task_id <> depends_on_task_id)
);
CREATE INDEX task_dependencies_depends_on_idx ON task_dependencies (depends_on_task_id);

CREATE TABLE jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id),
    persona_id uuid REFERENCES personas (id),
    node_id uuid REFERENCES nodes (id),
    kind text NOT NULL DEFAULT 'sandbox' CHECK (kind IN ('sandbox', 'model_call')),
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'canceled', 'lease_expired')),
    payload jsonb,
    result jsonb,
    lease_id uuid,
    lease_expires_at timestamptz,
    attempt int NOT NULL DEFAULT 0,
    max_attempts int NOT NULL DEFAULT 3,
    not_before timestamptz,
    started_at timestamptz,
    ended_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_task_id_idx ON jobs (task_id, created_at);
CREATE INDEX jobs_persona_id_idx ON jobs (persona_id) WHERE persona_id IS NOT NULL;
CREATE INDEX jobs_node_id_idx ON jobs (node_id);
CREATE INDEX jobs_status_idx ON jobs (status);
CREATE INDEX jobs_lease_id_idx ON jobs (lease_id) WHERE lease_id IS NOT NULL;
CREATE INDEX jobs_lease_expires_at_idx ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_created_at_idx ON jobs (created_at);
CREATE INDEX jobs_queued_claim_idx ON jobs (created_at, id) WHERE status = 'queued';

-- run_id has no foreign key: runs and sessions are deferred (schema.md), the column is kept for later phases.
CREATE TABLE task_artifacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id),
    run_id uuid,
    path text NOT NULL,
    storage_ref text NOT NULL,
    size_bytes bigint,
    content_type text,
    checksum_sha256 text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, path)
);
CREATE INDEX task_artifacts_run_id_idx ON task_artifacts (run_id);
CREATE INDEX task_artifacts_created_at_idx ON task_artifacts (created_at);

CREATE TABLE idempotency_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id),
    key text NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    request_hash text NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

CREATE TABLE workflow_checkpoints (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL UNIQUE REFERENCES tasks (id),
    state jsonb NOT NULL,
    last_node_id text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_checkpoints_updated_at_idx ON workflow_checkpoints (updated_at);

CREATE TABLE task_workflow_leases (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL UNIQUE REFERENCES tasks (id),
    lease_id uuid NOT NULL,
    holder_id text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_workflow_leases_expires_at_idx ON task_workflow_leases (expires_at) WHERE expires_at IS NOT NULL;
