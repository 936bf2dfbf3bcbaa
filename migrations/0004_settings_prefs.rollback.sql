DROP TABLE preference_audit_log;
DROP TABLE preference_entries;
DROP TABLE system_settings_audit_log;
DROP TABLE system_settings;
