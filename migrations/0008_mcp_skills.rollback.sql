DROP TABLE skill_versions;
DROP TABLE skills;
DROP TABLE mcp_tool_call_audit_log;
