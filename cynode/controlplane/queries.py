"""SQL of the control plane: nodes, their capabilities and config, job claims, leases and results."""

# -- nodes ------------------------------------------------------------------------------------------------------------

UPSERT_NODE = """
INSERT INTO nodes (node_slug, status, worker_api_target_url, last_seen_at, last_capability_at)
VALUES (%(slug)s, 'active', %(url)s, now(), now())
ON CONFLICT (node_slug) DO UPDATE
   SET worker_api_target_url = EXCLUDED.worker_api_target_url,
       last_seen_at = now(), last_capability_at = now(), updated_at = now()
RETURNING id, status, (xmax = 0) AS created
"""

UPSERT_CAPABILITY = """
INSERT INTO node_capabilities (node_id, reported_at, capability_hash, capability_snapshot)
VALUES (%(node_id)s, now(), %(hash)s, %(snapshot)s)
ON CONFLICT (node_id) DO UPDATE
   SET reported_at = now(), capability_hash = EXCLUDED.capability_hash,
       capability_snapshot = EXCLUDED.capability_snapshot
"""

TOUCH_NODE = """
UPDATE nodes SET worker_api_target_url = %(url)s, last_seen_at = now(), last_capability_at = now(), updated_at = now()
WHERE id = %(node_id)s
"""

GET_NODE = """
SELECT n.id, n.node_slug, n.status, n.config_version, n.worker_api_target_url, n.config_ack_status,
       n.config_ack_error, n.last_seen_at, n.metadata, c.capability_snapshot
  FROM nodes n LEFT JOIN node_capabilities c ON c.node_id = n.id
 WHERE n.id = %(node_id)s
"""

LOCK_NODE = "SELECT id, node_slug, status, metadata FROM nodes WHERE id = %(node_id)s FOR UPDATE"

SET_DESIRED_CONFIG = """
UPDATE nodes
   SET metadata = metadata || jsonb_build_object('desired_config_version', %(version)s::text,
                                                 'desired_config_hash', %(hash)s::text,
                                                 'desired_config', %(config)s::jsonb,
                                                 'desired_config_issued_at', %(issued_at)s::text),
       updated_at = now()
 WHERE id = %(node_id)s
"""

RECORD_ACK = """
UPDATE nodes
   SET config_ack_at = %(ack_at)s, config_ack_status = %(status)s, config_ack_error = %(error)s,
       config_version = CASE WHEN %(status)s = 'applied' THEN %(version)s ELSE config_version END,
       metadata = CASE WHEN %(services)s::jsonb IS NULL THEN metadata
                       ELSE metadata || jsonb_build_object('managed_services_status', %(services)s::jsonb) END,
       last_seen_at = now(), updated_at = now()
 WHERE id = %(node_id)s
"""

# Dispatchable (orchestrator.md §7.1): active, acked `applied` for the latest issued config, a Worker API URL, seen
# within three heartbeat intervals. Ordered for P1 selection: fewest running jobs, then the smallest slug.
DISPATCHABLE_NODES = """
SELECT n.id, n.node_slug, n.worker_api_target_url, n.config_version, c.capability_snapshot,
       (SELECT count(*) FROM jobs j WHERE j.node_id = n.id AND j.status = 'running') AS running
  FROM nodes n JOIN node_capabilities c ON c.node_id = n.id
 WHERE n.status = 'active'
   AND n.config_ack_status = 'applied'
   AND n.config_version = n.metadata->>'desired_config_version'
   AND coalesce(n.worker_api_target_url, '') <> ''
   AND n.last_seen_at > now() - make_interval(secs => %(stale_s)s)
 ORDER BY running, n.node_slug
"""

# PM model candidates: like DISPATCHABLE_NODES, but a node that has applied an earlier config stays a candidate
# while it applies a newer one (otherwise issuing the selected model's config would drop the node it selected).
PM_CANDIDATE_NODES = DISPATCHABLE_NODES.replace(
    "AND n.config_version = n.metadata->>'desired_config_version'", "AND n.config_version IS NOT NULL")

ACTIVE_CREDENTIAL_EXISTS = """
SELECT EXISTS (SELECT 1 FROM api_credentials WHERE is_active AND (expires_at IS NULL OR expires_at > now())) AS ok
"""

# -- jobs -------------------------------------------------------------------------------------------------------------

CLAIMABLE_JOBS = """
SELECT id, task_id, kind, payload, attempt, max_attempts
  FROM jobs
 WHERE status = 'queued' AND (not_before IS NULL OR not_before <= now()) AND kind = ANY(%(kinds)s)
 ORDER BY created_at, id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
"""

MARK_JOB_RUNNING = """
UPDATE jobs
   SET status = 'running', node_id = %(node_id)s, lease_id = %(lease_id)s,
       lease_expires_at = now() + make_interval(secs => %(lease_s)s),
       started_at = now(), attempt = attempt + 1, not_before = NULL, updated_at = now()
 WHERE id = %(job_id)s
"""

# A result counts only for the lease it was dispatched under; a canceled job keeps its status but stores the result.
STORE_RESULT = """
UPDATE jobs
   SET status = CASE WHEN status = 'running' THEN %(status)s ELSE status END,
       result = %(result)s, ended_at = now(), lease_expires_at = NULL, updated_at = now()
 WHERE id = %(job_id)s AND lease_id = %(lease_id)s AND status IN ('running', 'canceled')
RETURNING task_id, status
"""

# Back to the queue: the node refused (429/503) or was lost mid-call. `refund` undoes the attempt a refusal cost.
REQUEUE_JOB = """
UPDATE jobs
   SET status = 'queued', node_id = NULL, lease_id = NULL, lease_expires_at = NULL, started_at = NULL,
       attempt = attempt - %(refund)s, not_before = now() + make_interval(secs => %(backoff_s)s), updated_at = now()
 WHERE id = %(job_id)s AND lease_id = %(lease_id)s AND status = 'running'
"""

CONVERT_TO_SANDBOX = """
UPDATE jobs
   SET kind = 'sandbox', payload = %(payload)s, status = 'queued', node_id = NULL, lease_id = NULL,
       lease_expires_at = NULL, started_at = NULL, attempt = attempt - 1, not_before = NULL, updated_at = now()
 WHERE id = %(job_id)s AND lease_id = %(lease_id)s AND status = 'running'
"""

EXPIRED_LEASES = """
UPDATE jobs
   SET status = CASE WHEN attempt >= max_attempts THEN 'lease_expired' ELSE 'queued' END,
       node_id = CASE WHEN attempt >= max_attempts THEN node_id END,
       ended_at = CASE WHEN attempt >= max_attempts THEN now() END,
       started_at = CASE WHEN attempt >= max_attempts THEN started_at END,
       lease_id = NULL, lease_expires_at = NULL, updated_at = now()
 WHERE status = 'running' AND lease_expires_at < now()
RETURNING id, task_id, status
"""
