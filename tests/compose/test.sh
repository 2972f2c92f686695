#!/usr/bin/env bash
# The image as deploy/docker-compose.yml runs it: builds the image with
# deploy/build-image.sh, starts the exporter and the remediator with the
# compose file's own flags, mounts, users and capabilities, and checks that
# /metrics names a running container and that an alert is acted on.
#
# What differs from the shipped file, in an override written here: host
# networking (dockerd here runs with --bridge=none, and the checks reach the
# daemons on 127.0.0.1), the token file's path, and a copy of
# deploy/remediator.toml with dry_run = false (the shipped one is dry-run; the
# first alert is answered in dry-run before the switch).
# Needs docker and docker-compose. Cleans up after itself, on failure too.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
project=pidwarden-test-compose-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/$project.XXXXXX")
dup=$project-dup
compose=(docker-compose -p "$project" -f "$ROOT/deploy/docker-compose.yml" -f "$work/override.yml")
failed=0

cleanup() {
    timeout 120 "${compose[@]}" down -v --timeout 5 >/dev/null 2>&1
    timeout 60 docker rm -f "$dup" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() {
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=$((failed + 1)); fi
}
poll() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -ge $end ] && return 1
        sleep 1
    done
}

deploy/build-image.sh "pidwarden:$version" || exit 1

umask 077
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token"
token=$(cat "$work/token")
sed 's/^dry_run = true/dry_run = false/' deploy/remediator.toml >"$work/live.toml"
cp deploy/remediator.toml "$work/dry.toml"
umask 022
chmod 644 "$work/dry.toml" "$work/live.toml" "$work/token"
write_override() { # CONFIG
    cat >"$work/override.yml" <<YAML
services:
  exporter:
    network_mode: host
  remediator:
    network_mode: host
    volumes:
      - $work/$1:/etc/pidwarden/remediator.toml:ro
secrets:
  remediator_token:
    file: $work/token
YAML
}

metrics() { curl -sf --max-time 10 http://127.0.0.1:9917/metrics; }
names_dup() { metrics | grep -q "^pidwarden_container_info{.*name=\"$dup\""; }
healthy() { curl -sf --max-time 5 -o /dev/null http://127.0.0.1:9918/healthz; }
actions() { curl -sf --max-time 10 -H "Authorization: Bearer $token" 'http://127.0.0.1:9918/api/v1/actions?limit=50'; }
has_result() { actions | grep -q "\"result\":\"$1\""; }
copies() {
    docker exec "$dup" ps -o args 2>/dev/null | grep -c '^sleep 100000$'
}
copies_are() { [ "$(copies)" = "$1" ]; }
post_alert() { # FINGERPRINT
    curl -sf -w '\n' --max-time 10 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data-binary @- http://127.0.0.1:9918/api/v1/alerts <<JSON
{"receiver":"pidwarden","status":"firing","version":"4","groupKey":"{}:{}","truncatedAlerts":0,
 "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093",
 "alerts":[{"status":"firing","labels":{"alertname":"PidwardenDuplicatesExhaustingPids","id":"$id",
 "pidwarden_action":"kill-duplicates"},"annotations":{},"startsAt":"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)",
 "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus/graph","fingerprint":"$1"}]}
JSON
}

id=$(timeout 60 docker run -d --name "$dup" --network none pidwarden-test-busybox:latest \
    sh -c 'for i in 1 2 3 4 5 6; do sleep 100000 & done; wait') || exit 1
check "a container with 6 copies runs" poll 30 copies_are 6

write_override dry.toml
check "compose up (shipped config, dry-run)" timeout 180 "${compose[@]}" up -d exporter remediator
check "the exporter's /metrics names the container" poll 60 names_dup
check "the remediator answers" poll 60 healthy
check "an alert is answered" post_alert 00000000000000c1
check "the shipped config records dry_run" poll 60 has_result dry_run
check "dry-run killed nothing" copies_are 6

write_override live.toml
check "compose up (dry_run = false)" timeout 180 "${compose[@]}" up -d remediator
check "the remediator answers again" poll 60 healthy
check "the alert is answered live" post_alert 00000000000000c1
check "the alert is acted on" poll 90 has_result done
check "surplus copies killed, one kept" poll 30 copies_are 1
check "the audit trail kept its dry-run row" has_result dry_run
if [ $failed -gt 0 ]; then
    timeout 60 "${compose[@]}" logs --tail 30 exporter remediator
fi
echo "compose: $failed failed"
exit $((failed > 0))
