#!/usr/bin/env bash
# Installs (when absent) and starts (when not answering) the PostgreSQL that the ledger
# contract tests use, then prints its URL on stdout (everything else goes to stderr):
#
#   CXPIPE_TEST_POSTGRES_URL="$(bash .ci/postgres.sh)"
#
# Debian's `postgresql` package (PostgreSQL 15 on bookworm), installed with apt-get (sudo
# when not root). A cluster of its own in $DIR/data, on 127.0.0.1:$PORT only, run by an
# unprivileged user (the package's `postgres` user when this runs as root); superuser
# "cxpipe" (password "cxpipe-test"), database "cxpipe_test". Idempotent: skips what is
# installed, initialised or running. `bash .ci/postgres.sh stop` stops the cluster.
set -euo pipefail

DIR="${CXPIPE_CI_DIR:-${TMPDIR:-/tmp}/cxpipe-ci-servers}/postgres"
PORT="${CXPIPE_CI_POSTGRES_PORT:-55432}"
USER_NAME=cxpipe
PASSWORD=cxpipe-test
DATABASE=cxpipe_test

log() { echo "$@" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ -z "$(pg_bin)" ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  log "installing postgresql (Debian package)"
  { $SUDO apt-get install -y postgresql || { $SUDO apt-get update && $SUDO apt-get install -y postgresql; }; } >&2
fi
BIN="$(pg_bin)"
[ -x "$BIN/initdb" ] || { log "no initdb under /usr/lib/postgresql/*/bin"; exit 1; }

# PostgreSQL refuses to run as root: run it as the package's unprivileged user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = "stop" ]; then
  if [ -f "$DIR/data/postmaster.pid" ]; then
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2
  else
    log "postgres: not running from this script"
  fi
  exit 0
fi

mkdir -p "$DIR/sock"
[ "$(id -u)" = 0 ] && chown -R postgres: "$DIR"

if [ ! -f "$DIR/data/PG_VERSION" ]; then
  log "initialising a PostgreSQL cluster in $DIR/data"
  printf '%s\n' "$PASSWORD" >"$DIR/pwfile"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/pwfile"
  as_owner "$BIN/initdb" -D "$DIR/data" -U "$USER_NAME" --pwfile="$DIR/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2
  rm -f "$DIR/pwfile"
fi

if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "postgres already listening on 127.0.0.1:$PORT"
else
  log "starting postgres on 127.0.0.1:$PORT (log: $DIR/postgres.log)"
  # More connections than the default 100: the contract tests run in parallel.
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR/sock -c max_connections=200 -c fsync=off" \
    start >&2 || { tail -20 "$DIR/postgres.log" >&2; exit 1; }
fi

export PGPASSWORD="$PASSWORD"
exists="$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$USER_NAME" -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")"
if [ "$exists" != 1 ]; then
  log "creating database $DATABASE"
  "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$USER_NAME" "$DATABASE" >&2
fi

echo "postgres://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
