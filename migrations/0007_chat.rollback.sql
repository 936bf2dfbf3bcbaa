DROP TABLE chat_audit_log;
DROP TABLE chat_messages;
DROP TABLE chat_threads;
