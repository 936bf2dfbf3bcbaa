-- The scheduler counts each node's running jobs on every claim; completed jobs keep their node_id, so index only
-- the running ones (the count stays cheap however many jobs a node has finished).
-- depends: 0009_gateway_audit

CREATE INDEX jobs_running_by_node_idx ON jobs (node_id) WHERE status = 'running';
