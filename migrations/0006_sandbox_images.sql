-- Sandbox image registry (schema.md; registry flows are deferred, the tables exist from the start)
-- depends: 0005_egress_models

CREATE TABLE sandbox_images (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE,
    description text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'system'
);

CREATE TABLE sandbox_image_versions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sandbox_image_id uuid NOT NULL REFERENCES sandbox_images (id),
    version text NOT NULL,
    image_ref text NOT NULL,
    image_digest text,
    capabilities jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_allowed boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sandbox_image_id, version)
);
CREATE INDEX sandbox_image_versions_is_allowed_idx ON sandbox_image_versions (is_allowed);

CREATE TABLE node_sandbox_image_availability (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    node_id uuid NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    sandbox_image_version_id uuid NOT NULL REFERENCES sandbox_image_versions (id),
    status text NOT NULL,
    last_checked_at timestamptz NOT NULL DEFAULT now(),
    details jsonb,
    UNIQUE (node_id, sandbox_image_version_id)
);
