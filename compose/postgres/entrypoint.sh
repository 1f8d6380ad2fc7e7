#!/bin/sh
# PostgreSQL for meshplane's replicas: creates the cluster on first start (PGDATA empty), with
# the user and database POSTGRES_USER / POSTGRES_DB (default meshplane) and the password
# POSTGRES_PASSWORD (required: peers on the network log in with it, scram-sha-256), then runs
# the server in the foreground, listening on every address of the container.
set -eu

die() { echo "meshplane-postgres: $*" >&2; exit 1; }

[ -n "${POSTGRES_PASSWORD:-}" ] || die "POSTGRES_PASSWORD is required"
USER_NAME=${POSTGRES_USER:-meshplane}
DB_NAME=${POSTGRES_DB:-meshplane}
PGDATA=${PGDATA:-/var/lib/postgresql/data}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U "$USER_NAME" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$DB_NAME" != postgres ]; then
        "$BIN/postgres" -D "$PGDATA" -c listen_addresses= -k /tmp &
        pid=$!
        i=0
        until "$BIN/pg_isready" -q -h /tmp -U "$USER_NAME"; do
            i=$((i + 1)); [ $i -lt 100 ] || die "the server did not start"
            sleep 0.1
        done
        "$BIN/psql" -q -h /tmp -U "$USER_NAME" -d postgres -c "CREATE DATABASE \"$DB_NAME\""
        kill -INT "$pid"
        wait "$pid" || true
    fi
    echo "meshplane-postgres: cluster created in $PGDATA (user $USER_NAME, database $DB_NAME)" >&2
fi

exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp "$@"
