#!/usr/bin/env bash
# Installs (when absent) and starts (when not listening) the storage test servers used by
# `cargo test --test it storage::`. Idempotent; exports nothing. Fixed loopback endpoints:
#
#   S3 (s3s-fs 0.14.1)  http://127.0.0.1:9010   access key "cxpipe-test", secret "cxpipe-test-secret",
#                       bucket "cxpipe-test" (a folder under $CXPIPE_CI_DIR/s3)
#   Azure (Azurite)     http://127.0.0.1:10000/devstoreaccount1   account "devstoreaccount1",
#                       the well-known Azurite key; the tests create container "cxpipe-test".
#
# The tests read CXPIPE_TEST_S3_ENDPOINT / CXPIPE_TEST_AZURE_ENDPOINT to override those
# endpoints, skip a backend whose port does not answer, and fail instead when CI=true.
#
# Both are installed globally (~/.cargo/bin, npm -g) and left running after the tests;
# `bash .ci/servers.sh stop` stops the servers this script started (their pids are in
# $DIR/*.pid).
set -euo pipefail

DIR="${CXPIPE_CI_DIR:-${TMPDIR:-/tmp}/cxpipe-ci-servers}"
mkdir -p "$DIR/s3/cxpipe-test" "$DIR/azurite"

if [ "${1:-}" = "stop" ]; then
  for name in s3s-fs azurite; do
    pidfile="$DIR/$name.pid"
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
      echo "stopped $name (pid $(cat "$pidfile"))"
    else
      echo "$name: not running from this script"
    fi
    rm -f "$pidfile"
  done
  exit 0
fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name
  for _ in $(seq 1 60); do
    if listening "$1"; then echo "$2 listening on 127.0.0.1:$1"; return 0; fi
    sleep 0.5
  done
  echo "$2 did not start on 127.0.0.1:$1 (log: $DIR/$2.log)" >&2
  tail -20 "$DIR/$2.log" >&2 || true
  return 1
}

if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "installing s3s-fs 0.14.1 (a few minutes of compiling)"
  cargo install s3s-fs@0.14.1 --features binary --locked
fi
if ! command -v azurite-blob >/dev/null 2>&1; then
  echo "installing azurite"
  npm install -g azurite
fi

if ! listening 9010; then
  nohup s3s-fs --host 127.0.0.1 --port 9010 \
    --access-key cxpipe-test --secret-key cxpipe-test-secret \
    "$DIR/s3" >"$DIR/s3s-fs.log" 2>&1 &
  echo $! >"$DIR/s3s-fs.pid"
fi
if ! listening 10000; then
  nohup azurite-blob --blobHost 127.0.0.1 --blobPort 10000 --location "$DIR/azurite" \
    --disableTelemetry --skipApiVersionCheck --loose >"$DIR/azurite.log" 2>&1 &
  echo $! >"$DIR/azurite.pid"
fi

wait_for 9010 s3s-fs
wait_for 10000 azurite
