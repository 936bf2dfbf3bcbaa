-- API egress credentials and audit, model registry, routing decisions (egress.md §2.9, §3, §4.7, §7, §10)
-- depends: 0004_settings_prefs

CREATE TABLE api_credentials (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_type text NOT NULL CHECK (owner_type IN ('user', 'group')),
    owner_id uuid NOT NULL,
    provider text NOT NULL,
    credential_type text NOT NULL CHECK (credential_type IN ('api_key', 'bearer_token', 'oauth_token')),
    credential_name text NOT NULL,
    credential_ciphertext bytea NOT NULL,
    credential_kid text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL,
    UNIQUE (owner_type, owner_id, provider, credential_name)
);
CREATE INDEX api_credentials_owner_idx ON api_credentials (owner_type, owner_id, provider);
CREATE INDEX api_credentials_provider_idx ON api_credentials (provider);
CREATE INDEX api_credentials_is_active_idx ON api_credentials (is_active);

CREATE TABLE api_credential_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    credential_id uuid NOT NULL,
    action text NOT NULL CHECK (action IN ('create', 'rotate', 'disable', 'enable', 'update')),
    actor_user_id uuid,
    owner_type text NOT NULL,
    owner_id uuid NOT NULL,
    provider text NOT NULL,
    details jsonb
);
CREATE INDEX api_credential_audit_log_created_at_idx ON api_credential_audit_log (created_at);

CREATE TABLE api_egress_call_log (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration_ms int,
    task_id uuid,
    job_id uuid,
    subject_type text,
    subject_id uuid,
    agent text,
    provider text NOT NULL,
    operation text NOT NULL,
    model text,
    credential_id uuid,
    credential_owner_type text,
    decision text NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason text,
    outcome text NOT NULL CHECK (outcome IN
        ('pending', 'success', 'denied', 'not_implemented', 'rate_limited', 'upstream_error', 'timeout')),
    http_status int,
    upstream_status int,
    request_bytes bigint,
    response_bytes bigint,
    prompt_tokens int,
    completion_tokens int,
    cost_usd numeric(12, 6)
);
CREATE INDEX api_egress_call_log_created_at_idx ON api_egress_call_log (created_at);
CREATE INDEX api_egress_call_log_task_id_idx ON api_egress_call_log (task_id);
CREATE INDEX api_egress_call_log_subject_idx ON api_egress_call_log (subject_id, created_at);

CREATE TABLE web_fetch_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    duration_ms int,
    task_id uuid,
    job_id uuid,
    subject_id uuid,
    agent text,
    requested_url text NOT NULL,
    final_url text,
    decision text NOT NULL,
    reason text,
    outcome text NOT NULL CHECK (outcome IN ('success', 'denied', 'upstream_error', 'timeout', 'invalid', 'rate_limited')),
    http_status int,
    redirect_count int,
    robots_applied boolean,
    bytes_fetched bigint,
    chars_returned bigint,
    truncated boolean
);
CREATE INDEX web_fetch_audit_log_created_at_idx ON web_fetch_audit_log (created_at);
CREATE INDEX web_fetch_audit_log_task_id_idx ON web_fetch_audit_log (task_id);

CREATE TABLE models (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    vendor text,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system'
);
CREATE UNIQUE INDEX models_name_vendor ON models (name, coalesce(vendor, ''));
CREATE INDEX models_name_idx ON models (name);

CREATE TABLE model_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_id uuid NOT NULL REFERENCES models (id),
    version text NOT NULL,
    capabilities jsonb NOT NULL DEFAULT '{}'::jsonb,
    default_parameters jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_id, version)
);

CREATE TABLE model_artifacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_version_id uuid NOT NULL REFERENCES model_versions (id),
    artifact_type text NOT NULL CHECK (artifact_type IN ('ollama', 'gguf', 'safetensors')),
    sha256 text NOT NULL UNIQUE,
    size_bytes bigint NOT NULL,
    cache_path text NOT NULL,
    source_uri text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_artifacts_model_version_id_idx ON model_artifacts (model_version_id);

CREATE TABLE node_model_availability (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    node_id uuid NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    model_version_id uuid NOT NULL REFERENCES model_versions (id),
    status text NOT NULL CHECK (status IN ('available', 'loading', 'pulling', 'failed', 'evicted')),
    last_checked_at timestamptz NOT NULL DEFAULT now(),
    details jsonb,
    UNIQUE (node_id, model_version_id)
);

CREATE TABLE model_management_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    actor_user_id uuid,
    action text NOT NULL CHECK (action IN ('pull', 'evict', 'import')),
    model_ref text NOT NULL,
    node_slug text,
    decision text NOT NULL,
    reason text
);
CREATE INDEX model_management_audit_log_created_at_idx ON model_management_audit_log (created_at);

CREATE TABLE model_routing_decisions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    task_id uuid,
    job_id uuid,
    chat_thread_id uuid,
    user_id uuid,
    agent_role text,
    requested_model text,
    decision text NOT NULL CHECK (decision IN ('local', 'external', 'deny')),
    node_slug text,
    provider text,
    model_ref text,
    reasons jsonb NOT NULL DEFAULT '[]'::jsonb,
    settings_snapshot jsonb,
    egress_call_ids jsonb
);
CREATE INDEX model_routing_decisions_task_id_idx ON model_routing_decisions (task_id);
CREATE INDEX model_routing_decisions_created_at_idx ON model_routing_decisions (created_at);
