"""Identity: passwords, tokens, sessions, RBAC decisions."""
