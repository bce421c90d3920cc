#!/bin/sh
# Serves examples/serve.toml (the recording download for two tenants, every five minutes)
# against a simulator started here. Ctrl-C stops both.
#
#   examples/serve-demo.sh                                   # with `cxpipe` on PATH
#   CXPIPE="cargo run --release --" examples/serve-demo.sh   # from a checkout
#
# Then: http://127.0.0.1:8480/ (status page), /status, /metrics, and a run now with
#   curl -X POST -H "Authorization: Bearer $TOKEN" 'http://127.0.0.1:8480/pipelines/download/run?tenant=acme'
set -eu
cd "$(dirname "$0")"
CXPIPE=${CXPIPE:-cxpipe}
details=$(mktemp)
$CXPIPE sim --port 9700 --seed 1 --recordings 50 >"$details" &
sim=$!
trap 'kill $sim 2>/dev/null; rm -f "$details"' EXIT INT TERM
i=0
until grep -q '^WEBHOOK_SECRET=' "$details"; do
    i=$((i + 1))
    if [ "$i" -gt 600 ] || ! kill -0 "$sim" 2>/dev/null; then
        echo "the simulator did not start" >&2
        exit 1
    fi
    sleep 0.5
done
SIM_CLIENT_SECRET=$(sed -n 's/^CLIENT_SECRET=//p' "$details")
SIM_WEBHOOK_SECRET=$(sed -n 's/^WEBHOOK_SECRET=//p' "$details")
CXPIPE_SERVE_TOKEN=${CXPIPE_SERVE_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export SIM_CLIENT_SECRET SIM_WEBHOOK_SECRET CXPIPE_SERVE_TOKEN
echo "bearer token for POST /pipelines/NAME/run: $CXPIPE_SERVE_TOKEN" >&2
$CXPIPE serve --config serve.toml --state serve-state
