-- Projects, plans, git repos, groups, roles, bindings, access control (schema.md)
-- depends: 0001_identity

CREATE TABLE projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug text NOT NULL UNIQUE,
    display_name text NOT NULL,
    description text,
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system'
);
CREATE INDEX projects_is_active_idx ON projects (is_active);

CREATE TABLE project_plans (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id),
    plan_name text,
    plan_body text,
    state text NOT NULL,
    archived boolean NOT NULL DEFAULT false,
    is_plan_locked boolean NOT NULL DEFAULT false,
    plan_locked_at timestamptz,
    plan_locked_by uuid REFERENCES users (id),
    plan_approved_at timestamptz,
    plan_approved_by uuid REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid REFERENCES users (id)
);
CREATE UNIQUE INDEX project_plans_one_active ON project_plans (project_id) WHERE state = 'active';
CREATE INDEX project_plans_project_state_idx ON project_plans (project_id, state);
CREATE INDEX project_plans_state_idx ON project_plans (state);
CREATE INDEX project_plans_archived_idx ON project_plans (archived);

CREATE TABLE project_plan_revisions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    plan_id uuid NOT NULL REFERENCES project_plans (id),
    version integer NOT NULL,
    plan_name text,
    plan_body text,
    task_ids jsonb,
    task_dependencies jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid REFERENCES users (id),
    UNIQUE (plan_id, version)
);
CREATE INDEX project_plan_revisions_created_idx ON project_plan_revisions (plan_id, created_at);

CREATE TABLE project_git_repos (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id),
    provider text NOT NULL,
    repo_identifier text NOT NULL,
    base_url text,
    display_name text,
    description text,
    tags jsonb,
    metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, provider, repo_identifier)
);
CREATE INDEX project_git_repos_provider_idx ON project_git_repos (provider, repo_identifier);

CREATE TABLE groups (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug text NOT NULL UNIQUE,
    display_name text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    external_source text,
    external_id text,
    managed_by text,
    last_synced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system'
);
CREATE INDEX groups_is_active_idx ON groups (is_active);

CREATE TABLE group_memberships (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    group_id uuid NOT NULL REFERENCES groups (id),
    user_id uuid NOT NULL REFERENCES users (id),
    is_active boolean NOT NULL DEFAULT true,
    external_source text,
    external_id text,
    managed_by text,
    last_synced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system',
    UNIQUE (group_id, user_id)
);
CREATE INDEX group_memberships_user_id_idx ON group_memberships (user_id);
CREATE INDEX group_memberships_is_active_idx ON group_memberships (is_active);

CREATE TABLE roles (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE role_bindings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_type text NOT NULL CHECK (subject_type IN ('user', 'group')),
    subject_id uuid NOT NULL,
    role_id uuid NOT NULL REFERENCES roles (id),
    scope_type text NOT NULL CHECK (scope_type IN ('system', 'project')),
    scope_id uuid,
    is_active boolean NOT NULL DEFAULT true,
    managed_by text,
    last_synced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system',
    CHECK ((scope_type = 'system') = (scope_id IS NULL))
);
CREATE INDEX role_bindings_subject_idx ON role_bindings (subject_type, subject_id);
CREATE INDEX role_bindings_role_id_idx ON role_bindings (role_id);
CREATE INDEX role_bindings_scope_idx ON role_bindings (scope_type, scope_id);
CREATE INDEX role_bindings_is_active_idx ON role_bindings (is_active);
CREATE UNIQUE INDEX role_bindings_unique ON role_bindings
    (subject_type, subject_id, role_id, scope_type, coalesce(scope_id, '00000000-0000-0000-0000-000000000000'::uuid));

CREATE TABLE access_control_rules (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_type text NOT NULL,
    subject_id uuid,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_pattern text NOT NULL,
    effect text NOT NULL CHECK (effect IN ('allow', 'deny')),
    priority int NOT NULL DEFAULT 0,
    conditions jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system',
    CHECK (subject_type = 'system' OR subject_id IS NOT NULL)
);
CREATE INDEX access_control_rules_subject_idx ON access_control_rules (subject_type, subject_id);
CREATE INDEX access_control_rules_action_idx ON access_control_rules (action);
CREATE INDEX access_control_rules_resource_type_idx ON access_control_rules (resource_type);
CREATE INDEX access_control_rules_priority_idx ON access_control_rules (priority);
CREATE UNIQUE INDEX access_control_rules_upsert_key ON access_control_rules
    (subject_type, coalesce(subject_id, '00000000-0000-0000-0000-000000000000'::uuid), action, resource_type, resource_pattern);

CREATE TABLE access_control_audit_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_type text NOT NULL,
    subject_id uuid,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource text NOT NULL,
    decision text NOT NULL,
    reason text,
    task_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_control_audit_log_created_at_idx ON access_control_audit_log (created_at);
CREATE INDEX access_control_audit_log_task_id_idx ON access_control_audit_log (task_id);

INSERT INTO roles (name, description) VALUES
    ('owner', 'Full control of the scope'),
    ('admin', 'Administers users, settings and nodes in the scope'),
    ('operator', 'Operates nodes and tasks'),
    ('member', 'Creates and reads their own tasks'),
    ('viewer', 'Read-only access');
