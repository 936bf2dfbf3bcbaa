"""The `cynode` command line: server commands (serve, db) and the gateway client commands."""
