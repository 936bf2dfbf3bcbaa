"""Database access: the psycopg pool, embedded PostgreSQL, migrations."""
