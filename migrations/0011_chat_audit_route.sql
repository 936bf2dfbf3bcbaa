-- The decided chat_audit_log columns (agents.md §3.11): the route taken, the thread and whether the reply streamed.
-- No foreign key to chat_threads: audit rows outlive the threads that chat retention purges.
-- depends: 0010_running_jobs_index

ALTER TABLE chat_audit_log
    ADD COLUMN route text CHECK (route IN ('pma', 'direct_inference')),
    ADD COLUMN thread_id uuid,
    ADD COLUMN stream boolean NOT NULL DEFAULT false;
