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
# Only the capability facts the scheduler needs are returned (it runs on every claim).
_NODES = """
SELECT n.id, n.node_slug, n.worker_api_target_url, n.config_version, {snapshot},
       coalesce((c.capability_snapshot->'sandbox'->>'supported')::boolean, false) AS sandbox_ok,
       coalesce((c.capability_snapshot->'inference'->>'running')::boolean, false)
         AND (coalesce((c.capability_snapshot->'inference'->>'supported')::boolean, false)
              OR coalesce((c.capability_snapshot->'inference'->>'existing_service')::boolean, false)) AS inference_ok,
       (SELECT count(*) FROM jobs j WHERE j.node_id = n.id AND j.status = 'running') AS running
  FROM nodes n JOIN node_capabilities c ON c.node_id = n.id
 WHERE n.status = 'active'
   AND n.config_ack_status = 'applied'
   AND {version_rule}
   AND coalesce(n.worker_api_target_url, '') <> ''
   AND n.last_seen_at > now() - make_interval(secs => %(stale_s)s)
 ORDER BY running, n.node_slug
"""
DISPATCHABLE_NODES = _NODES.format(snapshot="NULL AS capability_snapshot",
                                   version_rule="n.config_version = n.metadata->>'desired_config_version'")

# PM model candidates: like DISPATCHABLE_NODES, but a node that has applied an earlier config stays a candidate
# while it applies a newer one (otherwise issuing the selected model's config would drop the node it selected).
PM_CANDIDATE_NODES = _NODES.format(snapshot="c.capability_snapshot", version_rule="n.config_version IS NOT NULL")

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

# One statement marks a whole claimed batch running and starts its tasks (queued -> running only, §6.4).
MARK_JOBS_RUNNING = """
WITH claimed AS (
    UPDATE jobs j
       SET status = 'running', node_id = c.node_id, lease_id = c.lease_id,
           lease_expires_at = now() + make_interval(secs => c.lease_s),
           started_at = now(), attempt = j.attempt + 1, not_before = NULL, updated_at = now()
      FROM unnest(%(ids)s::uuid[], %(nodes)s::uuid[], %(leases)s::uuid[], %(lease_s)s::float8[])
           AS c(id, node_id, lease_id, lease_s)
     WHERE j.id = c.id
 RETURNING j.task_id)
UPDATE tasks SET status = 'running', updated_at = now()
 WHERE id IN (SELECT task_id FROM claimed) AND status = 'queued'
"""

# One statement stores a batch of results and settles their tasks (the rule of taskstate.settled_status: any
# failed or lease_expired job fails the task, all completed completes it, a closed task stays as it is).
# A result counts only for the lease it was dispatched under; a canceled job keeps its status but stores the result.
STORE_RESULTS = """
WITH r AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(statuses)s::text[], %(results)s::jsonb[])
           AS r(id, lease_id, status, result)),
stored AS (
    UPDATE jobs j
       SET status = CASE WHEN j.status = 'running' THEN r.status ELSE j.status END,
           result = r.result, ended_at = now(), lease_expires_at = NULL, updated_at = now()
      FROM r
     WHERE j.id = r.id AND j.lease_id = r.lease_id AND j.status IN ('running', 'canceled')
 RETURNING j.id, j.task_id, j.status),
outcome AS (
    SELECT jb.task_id,
           bool_or(coalesce(s.status, jb.status) IN ('failed', 'lease_expired')) AS any_failed,
           bool_and(coalesce(s.status, jb.status) = 'completed') AS all_done
      FROM jobs jb LEFT JOIN stored s ON s.id = jb.id
     WHERE jb.task_id IN (SELECT task_id FROM stored)
     GROUP BY jb.task_id),
settled AS (
    UPDATE tasks t
       SET status = CASE WHEN o.any_failed THEN 'failed' ELSE 'completed' END, closed = true, updated_at = now()
      FROM outcome o
     WHERE t.id = o.task_id AND t.status IN ('queued', 'running') AND (o.any_failed OR o.all_done))
SELECT id FROM stored
"""

# Claims still waiting for a free dispatcher renew their leases (a lease starts at the claim, §7.1, and must not run
# out before its job even starts): expiry becomes now + the job's lease. Returns the jobs whose lease is still held.
RENEW_LEASES = """
UPDATE jobs j
   SET lease_expires_at = now() + make_interval(secs => c.lease_s), updated_at = now()
  FROM unnest(%(ids)s::uuid[], %(leases)s::uuid[], %(lease_s)s::float8[]) AS c(id, lease_id, lease_s)
 WHERE j.id = c.id AND j.lease_id = c.lease_id AND j.status = 'running'
RETURNING j.id::text AS id
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
