DROP TABLE gateway_audit_log;
