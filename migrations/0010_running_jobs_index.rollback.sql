DROP INDEX jobs_running_by_node_idx;
