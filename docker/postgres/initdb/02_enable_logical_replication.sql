-- Logical replication for Debezium: a replication role and the publication it reads.
-- The role's password is set from the environment by whoever runs this file
-- (corisync stack up locally, docker/postgres/initdb/03_cdc_role_password.sh in compose); never stored here.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corisync_cdc') THEN
        CREATE ROLE corisync_cdc WITH LOGIN REPLICATION;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO corisync_cdc;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO corisync_cdc;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO corisync_cdc;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'corisync_pub') THEN
        -- FOR ALL TABLES: adding a table to the connector config needs no change here.
        CREATE PUBLICATION corisync_pub FOR ALL TABLES;
    END IF;
END
$$;

-- Debezium's signalling table (source channel; `signal.data.collection` in the connector config). Writing an
-- `execute-snapshot` row asks the connector for an incremental snapshot of tables (onboarding a table that
-- already holds rows, `corisync resnapshot`); the connector itself writes its snapshot-window markers here,
-- hence INSERT for the CDC role. It lives outside `public`, so it is never taken for a captured table.
CREATE SCHEMA IF NOT EXISTS corisync;
CREATE TABLE IF NOT EXISTS corisync.debezium_signal (
    id   varchar(64) PRIMARY KEY,
    type varchar(32) NOT NULL,
    data varchar(2048)
);
GRANT USAGE ON SCHEMA corisync TO corisync_cdc;
GRANT SELECT, INSERT ON corisync.debezium_signal TO corisync_cdc;
