#!/bin/sh
# First start: a cluster with trust auth on the compose network and the dits database.
set -e
bin=/usr/lib/postgresql/15/bin
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust >/dev/null
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 trust" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -w start >/dev/null
  psql -U postgres -c "CREATE ROLE ${POSTGRES_USER:-dits} LOGIN" >/dev/null
  psql -U postgres -c "CREATE DATABASE ${POSTGRES_DB:-dits} OWNER ${POSTGRES_USER:-dits}" >/dev/null
  "$bin/pg_ctl" -D "$PGDATA" -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA"
