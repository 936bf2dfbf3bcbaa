-- Identity: users, passwords, refresh sessions, personal API tokens, auth audit (orchestrator.md §3, DECISIONS 12)

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    handle text NOT NULL UNIQUE CHECK (handle ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    email text UNIQUE,
    is_active boolean NOT NULL DEFAULT true,
    external_source text,
    external_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_email_idx ON users (email) WHERE email IS NOT NULL;
CREATE INDEX users_is_active_idx ON users (is_active);

CREATE TABLE password_credentials (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL UNIQUE REFERENCES users (id),
    password_hash bytea NOT NULL,
    hash_alg text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id),
    refresh_token_hash bytea NOT NULL UNIQUE,
    refresh_token_kid text,
    family_id uuid NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    rotated_at timestamptz,
    expires_at timestamptz NOT NULL,
    last_used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_sessions_user_id_idx ON refresh_sessions (user_id);
CREATE INDEX refresh_sessions_active_idx ON refresh_sessions (is_active, expires_at);
CREATE INDEX refresh_sessions_family_idx ON refresh_sessions (family_id);

CREATE TABLE api_tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    token_hash bytea NOT NULL UNIQUE,
    prefix text NOT NULL,
    scopes jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id, created_at DESC);

CREATE TABLE auth_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type text NOT NULL,
    user_id uuid,
    subject_handle text,
    success boolean NOT NULL,
    ip_address inet,
    user_agent text,
    reason text,
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_audit_log_created_at_idx ON auth_audit_log (created_at);
CREATE INDEX auth_audit_log_user_id_idx ON auth_audit_log (user_id);
CREATE INDEX auth_audit_log_event_type_idx ON auth_audit_log (event_type);
