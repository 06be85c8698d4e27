-- Runs once, when the postgres container initialises an empty data volume
-- (mounted into /docker-entrypoint-initdb.d by deploy/compose.yaml).
-- Tessera's migrations expect pgvector; creating the extension here means the application
-- role does not need to be a superuser for it later.
CREATE EXTENSION IF NOT EXISTS vector;
