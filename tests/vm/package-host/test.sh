#!/bin/bash
# Runs inside the Debian 12 systemd + Docker VM (scripts/vm/host.sh): installs
# the pidwarden package as an operator would and checks the day-one path.
# Input (this directory): pidwarden.deb, busybox (static). Output: one
# `ok:`/`FAILED:` line per check; the exit status is the number of failures.
set -u
failed=0
check() {
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=$((failed + 1)); fi
}
# poll SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS.
poll() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -ge $end ] && return 1
        sleep 1
    done
}
get() { busybox wget -q -T 10 -O - "$@"; }
api() { get --header "Authorization: Bearer $(cat /etc/pidwarden/remediator.token)" "http://127.0.0.1:9918$1"; }
post_alert() { # FINGERPRINT
    local now
    now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
    cat >/tmp/alert.json <<JSON
{"receiver":"pidwarden","status":"firing","version":"4","groupKey":"{}:{}","truncatedAlerts":0,
 "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://alertmanager:9093",
 "alerts":[{"status":"firing","labels":{"alertname":"PidwardenDuplicatesExhaustingPids","id":"$ID",
 "pidwarden_action":"kill-duplicates","severity":"critical"},"annotations":{},"startsAt":"$now",
 "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus/graph","fingerprint":"$1"}]}
JSON
    busybox wget -q -T 10 -O - --header "Authorization: Bearer $(cat /etc/pidwarden/remediator.token)" \
        --header 'Content-Type: application/json' --post-file /tmp/alert.json http://127.0.0.1:9918/api/v1/alerts
}
copies() { docker top "$ID" -o args 2>/dev/null | grep -c '^sleep 100000$'; }
has_result() { api '/api/v1/actions?limit=50' | grep -q "\"result\":\"$1\""; }
both_rows() { has_result dry_run && has_result done; }
metrics_name_container() { get http://127.0.0.1:9917/metrics | grep -q "pidwarden_container_info{.*name=\"pidwarden-test-dup\""; }
gone() { ! test -e "$1"; }
no_user() { ! getent passwd pidwarden >/dev/null; }
active() { systemctl is-active --quiet "$1"; }

echo "docker: $(docker info --format '{{.CgroupDriver}} cgroup v{{.CgroupVersion}}')"
mkdir -p /tmp/img && cp busybox /tmp/img/busybox
(cd /tmp/img && tar c busybox) | docker import -q -c 'ENTRYPOINT ["/busybox"]' - pidwarden-test-bb >/dev/null
ID=$(docker run -d --name pidwarden-test-dup --network none pidwarden-test-bb \
    sh -c 'for i in 1 2 3 4 5 6; do sleep 100000 & done; wait')
check "a container with 6 copies runs" poll 30 sh -c "[ \"\$(docker top $ID -o args | grep -c '^sleep 100000\$')\" = 6 ]"

check "the package installs" dpkg -i pidwarden.deb
check "the token is root's, mode 600" test "$(stat -c '%U %a' /etc/pidwarden/remediator.token)" = "root 600"
check "the config is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' pidwarden | grep -q /etc/pidwarden/remediator.toml"
check "units installed disabled" sh -c '! systemctl is-enabled --quiet pidwarden-remediator'
check "systemctl enable --now" systemctl enable --now pidwarden-exporter pidwarden-remediator
check "exporter active" poll 30 active pidwarden-exporter
check "remediator active" poll 30 active pidwarden-remediator
check "/metrics names the running container" poll 60 metrics_name_container
check "remediator healthy" poll 30 sh -c 'busybox wget -q -O /dev/null http://127.0.0.1:9918/healthz'
check "an unauthenticated alert is refused" sh -c '! busybox wget -q -O /dev/null --post-data "{}" http://127.0.0.1:9918/api/v1/alerts'

check "the alert is answered (dry-run)" post_alert 00000000000000a1
check "the shipped default records dry_run" poll 60 has_result dry_run
check "dry-run killed nothing" test "$(copies)" = 6

sed -i 's/^dry_run = true/dry_run = false/' /etc/pidwarden/remediator.toml
check "restart into live" systemctl restart pidwarden-remediator
check "remediator active again" poll 30 sh -c 'busybox wget -q -O /dev/null http://127.0.0.1:9918/healthz'
check "the same alert is answered (live)" post_alert 00000000000000a1
check "live records done" poll 90 has_result done
check "surplus copies killed, one kept" poll 30 sh -c "[ \"\$(docker top $ID -o args | grep -c '^sleep 100000\$')\" = 1 ]"
check "the container still runs" test "$(docker inspect -f '{{.State.Running}}' "$ID")" = true

check "systemctl restart" systemctl restart pidwarden-remediator
check "the audit trail survives the restart" poll 30 both_rows
journalctl -u pidwarden-remediator --no-pager -n 5 | sed 's/^/  journal: /'

docker rm -f "$ID" >/dev/null
check "apt-get purge" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q pidwarden >/dev/null'
check "no unit left" sh -c '! ls /lib/systemd/system/pidwarden-* /etc/systemd/system/*.wants/pidwarden-* 2>/dev/null | grep -q .'
check "no binary left" gone /usr/bin/pidwarden-remediator
check "no /etc/pidwarden left" gone /etc/pidwarden
check "no state left" gone /var/lib/pidwarden
check "no user left" no_user
check "no service left running" sh -c '! pgrep -f pidwarden- >/dev/null'
exit "$failed"
