#!/bin/sh
# Authenticated webhook throughput of pidwarden-remediator, loopback only,
# 10 s per case, with wrk. Needs a release build and a running dockerd:
#   cargo build --release -p pidwarden-remediator && remediator/bench/webhook-throughput.sh
# Cases: an alert naming a well-formed id Docker does not know (a Docker
# inspect answering 404, then an audit row), and an alert whose id label is
# not a container id (rejected before any runtime call, still an audit row).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../../target/release/pidwarden-remediator}
port=${PORT:-19918}
tmp=$(mktemp -d /tmp/pidwarden-bench-XXXXXX)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
export PIDWARDEN_TOKEN=bench-token-$$
printf '%s\n' "$PIDWARDEN_TOKEN" > "$tmp/token"
RUST_LOG=warn "$bin" --listen "127.0.0.1:$port" --token-file "$tmp/token" --state-dir "$tmp/state" --dry-run &
pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

body() { # $1 = id label value
  printf '{"receiver":"pidwarden","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"PidwardenDuplicatesGrowing","id":"%s","pidwarden_action":"kill-duplicates","severity":"warning"},"annotations":{"summary":"x"},"startsAt":"2026-11-25T10:00:00.000Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus:9090/graph","fingerprint":"3f1c2a9b8d7e6f50"}],"groupLabels":{"alertname":"PidwardenDuplicatesGrowing"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4","groupKey":"{}:{alertname=\\"PidwardenDuplicatesGrowing\\"}","truncatedAlerts":0}\n' "$1"
}
body "$(printf 'ab%.0s' $(seq 32))" > "$tmp/unknown.json"
body "../../etc" > "$tmp/badid.json"
for case in unknown badid; do
  echo "== $case container id, 2 threads, 16 connections, 10 s"
  PIDWARDEN_PAYLOAD="$tmp/$case.json" wrk -t2 -c16 -d10s -s "$here/webhook.lua" "http://127.0.0.1:$port/api/v1/alerts"
done
echo "audit rows written: $("$bin" history --state-dir "$tmp/state" --json --limit 1 | grep -o '"id": [0-9]*' | head -1)"
