#!/bin/sh
# First start: create the cluster with the password from the environment (SCRAM), reachable from
# the stack's network only with a password; then run the command (postgres).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
db=${POSTGRES_DB:-scanbench}
user=${POSTGRES_USER:-scanbench}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=scram-sha-256 \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    {
        echo "listen_addresses = '*'"
        echo "password_encryption = scram-sha-256"
    } >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != postgres ]; then
        PGPASSWORD=$POSTGRES_PASSWORD createdb --username="$user" --owner="$user" "$db"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "scanbench-postgres: created the cluster and database $db" >&2
fi
if [ "${1:-}" = postgres ]; then
    shift
    exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
