ALTER TABLE chat_audit_log DROP COLUMN stream, DROP COLUMN thread_id, DROP COLUMN route;
