#!/usr/bin/env bash
# Runs once, on the first start of the compose postgres service (empty data volume), after
# 01_tc4a_schema.sql and 02_enable_logical_replication.sql, as the superuser in $POSTGRES_DB:
#   - sets the password of the replication role (CORISYNC_PG_CDC_USER, created by 02) from the environment;
#   - creates the operational owner role CORISYNC_PG_USER and hands it the tc4a database and its tables;
#   - creates the role and database of Dagster's instance storage (DAGSTER_PG_*) and of Metabase (MB_DB_*).
# Passwords come from the environment only (docker/.env) and go through psql variables, never into a file.
# Re-running it is harmless: every step checks what exists.
set -euo pipefail

: "${CORISYNC_PG_CDC_PASSWORD:?CORISYNC_PG_CDC_PASSWORD must be set}"
: "${CORISYNC_PG_PASSWORD:?CORISYNC_PG_PASSWORD must be set}"
: "${DAGSTER_PG_PASSWORD:?DAGSTER_PG_PASSWORD must be set}"
: "${MB_DB_PASS:?MB_DB_PASS must be set}"

psql_super() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" "$@"
}

psql_super --dbname "${POSTGRES_DB:-tc4a}" \
    -v cdc_user="${CORISYNC_PG_CDC_USER:-corisync_cdc}" \
    -v cdc_password="$CORISYNC_PG_CDC_PASSWORD" \
    -v app_user="${CORISYNC_PG_USER:-tc4a_app}" \
    -v app_password="$CORISYNC_PG_PASSWORD" \
    -v app_db="${POSTGRES_DB:-tc4a}" <<'SQL'
-- Replication role: 02 created corisync_cdc; a differently named CDC user is created here alike.
SELECT format('CREATE ROLE %I WITH LOGIN REPLICATION', :'cdc_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'cdc_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'cdc_user', :'cdc_password') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'cdc_user') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'cdc_user') \gexec
-- Debezium's signalling table (02): the connector writes its snapshot windows there, CoriSync its requests.
SELECT format('GRANT USAGE ON SCHEMA corisync TO %I', :'cdc_user') \gexec
SELECT format('GRANT SELECT, INSERT ON corisync.debezium_signal TO %I', :'cdc_user') \gexec

-- Operational owner: owns the database, the schema's tables (and their identity sequences).
SELECT format('CREATE ROLE %I WITH LOGIN', :'app_user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app_user', :'app_password') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'app_db', :'app_user') \gexec
SELECT format('GRANT ALL ON SCHEMA public TO %I', :'app_user') \gexec
SELECT format('ALTER TABLE public.%I OWNER TO %I', tablename, :'app_user')
  FROM pg_tables WHERE schemaname = 'public' \gexec
-- Tables the application creates later stay readable by the CDC role (Debezium's snapshot).
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'app_user', :'cdc_user') \gexec
SQL

# create_db ROLE PASSWORD DB: a login role owning its own database.
create_db() {
    psql_super --dbname postgres -v role="$1" -v password="$2" -v db="$3" <<'SQL'
SELECT format('CREATE ROLE %I WITH LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'role', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'db') \gexec
SQL
}

create_db "${DAGSTER_PG_USER:-dagster}" "$DAGSTER_PG_PASSWORD" "${DAGSTER_PG_DB:-dagster}"
create_db "${MB_DB_USER:-metabase}" "$MB_DB_PASS" "${MB_DB_DBNAME:-metabase}"
