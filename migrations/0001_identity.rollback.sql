DROP TABLE auth_audit_log;
DROP TABLE api_tokens;
DROP TABLE refresh_sessions;
DROP TABLE password_credentials;
DROP TABLE users;
