#!/bin/bash
# Runs inside the Debian 12 systemd + Docker VM (scripts/vm/systemd-host.sh
# run tests/vm/package-host/test.sh DEB /bin/busybox): installs the pidwarden
# package as an operator would and checks the day-one path. Input, beside this
# script: the package and a static busybox. Output: one `ok:`/`FAILED:` line
# per check; the exit status is the number of failures.
set -u
cd "$(dirname "$0")" || exit 1
DEB=$(ls pidwarden_*.deb | head -n 1)
failed=0
# http METHOD PORT PATH [BODY_FILE [TOKEN]]: an HTTP/1.0 request to
# 127.0.0.1 through bash's /dev/tcp (the image has no curl, and busybox wget
# crashes on these responses under software emulation); prints the body,
# succeeds on a 2xx status.
http() {
    local method=$1 port=$2 path=$3 body=${4:-} token=${5:-}
    timeout 15 bash -c '
        method=$1 port=$2 path=$3 body=$4 token=$5
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        {
            printf "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n" "$method" "$path"
            [ -n "$token" ] && printf "Authorization: Bearer %s\r\n" "$token"
            if [ -n "$body" ]; then
                printf "Content-Type: application/json\r\nContent-Length: %s\r\n" "$(stat -c %s "$body")"
            fi
            printf "\r\n"
            [ -n "$body" ] && cat "$body"
        } >&3
        response=$(cat <&3 | tr -d "\r")
        status=$(head -n 1 <<<"$response" | cut -d" " -f2)
        sed "1,/^\$/d" <<<"$response"
        case $status in 2??) exit 0 ;; *) echo "HTTP $status" >&2; exit 1 ;; esac
    ' http "$method" "$port" "$path" "$body" "$token"
}
token() { cat /etc/pidwarden/remediator.token; }
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
api() { http GET 9918 "$1" "" "$(token)"; }
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
    http POST 9918 /api/v1/alerts /tmp/alert.json "$(token)"
}
# copies: processes of the container whose command line is `sleep 100000`,
# read from the container's own cgroup (the kernel's view).
copies() {
    local pid n=0
    for pid in $(cat "/sys/fs/cgroup/system.slice/docker-$ID.scope/cgroup.procs" 2>/dev/null); do
        [ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" = "sleep 100000 " ] && n=$((n + 1))
    done
    echo "$n"
}
copies_are() { [ "$(copies)" = "$1" ]; }
has_result() { api '/api/v1/actions?limit=50' | grep -q "\"result\":\"$1\""; }
both_rows() { has_result dry_run && has_result done; }
healthy() { http GET 9918 /healthz >/dev/null; }
unauthenticated_refused() { echo '{}' >/tmp/empty.json; ! http POST 9918 /api/v1/alerts /tmp/empty.json 2>/dev/null; }
metrics_name_container() { http GET 9917 /metrics | grep -q "pidwarden_container_info{.*name=\"pidwarden-test-dup\""; }
gone() { ! test -e "$1"; }
no_units() {
    local left
    left=$(find /lib/systemd/system /usr/lib/systemd/system /etc/systemd/system \( -name 'pidwarden-exporter*' -o -name 'pidwarden-remediator*' \) 2>/dev/null)
    [ -z "$left" ] || { echo "left: $left"; return 1; }
}
# comm is cut at 15 bytes: pidwarden-expor, pidwarden-remed.
no_daemons() { ! pgrep -l -x pidwarden-expor && ! pgrep -l -x pidwarden-remed; }
no_user() { ! getent passwd pidwarden >/dev/null; }
active() { systemctl is-active --quiet "$1"; }

echo "docker: $(docker info --format '{{.CgroupDriver}} cgroup v{{.CgroupVersion}}')"
# An image FROM nothing: the static busybox and its applet links.
mkdir -p /tmp/img/bin && cp busybox /tmp/img/bin/busybox
for applet in $(/tmp/img/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "/tmp/img/bin/$applet"
done
(cd /tmp/img && tar c .) | docker import -c 'CMD ["/bin/sh"]' - pidwarden-test-bb >/dev/null
ID=$(docker run -d --name pidwarden-test-dup --network none pidwarden-test-bb \
    sh -c 'for i in 1 2 3 4 5 6; do sleep 100000 & done; wait')
check "a container with 6 copies runs" poll 30 copies_are 6

check "the package installs" dpkg -i "$DEB"
check "the token is root's, mode 600" test "$(stat -c '%U %a' /etc/pidwarden/remediator.token)" = "root 600"
check "the config is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' pidwarden | grep -q /etc/pidwarden/remediator.toml"
check "units installed disabled" sh -c '! systemctl is-enabled --quiet pidwarden-remediator'
check "systemctl enable --now" systemctl enable --now pidwarden-exporter pidwarden-remediator
check "exporter active" poll 30 active pidwarden-exporter
check "remediator active" poll 30 active pidwarden-remediator
check "/metrics names the running container" poll 60 metrics_name_container
check "remediator healthy" poll 30 healthy
check "an unauthenticated alert is refused" unauthenticated_refused

check "the alert is answered (dry-run)" post_alert 00000000000000a1
check "the shipped default records dry_run" poll 60 has_result dry_run
check "dry-run killed nothing" test "$(copies)" = 6

sed -i 's/^dry_run = true/dry_run = false/' /etc/pidwarden/remediator.toml
check "restart into live" systemctl restart pidwarden-remediator
check "remediator active again" poll 30 healthy
check "the same alert is answered (live)" post_alert 00000000000000a1
check "live records done" poll 90 has_result done
check "surplus copies killed, one kept" poll 30 copies_are 1
check "the container still runs" test "$(docker inspect -f '{{.State.Running}}' "$ID")" = true

check "systemctl restart" systemctl restart pidwarden-remediator
check "the audit trail survives the restart" poll 30 both_rows
# An upgrade: the same package under a higher version (repacked here).
rm -rf /tmp/next && dpkg-deb -R "$DEB" /tmp/next
sed -i 's/^Version: .*/&+next1/' /tmp/next/DEBIAN/control
dpkg-deb -b /tmp/next /tmp/pidwarden-next.deb >/dev/null
token_before=$(token)
check "upgrade installs" dpkg -i /tmp/pidwarden-next.deb
check "upgrade keeps the token" test "$(token)" = "$token_before"
check "upgrade keeps the edited config" grep -q '^dry_run = false' /etc/pidwarden/remediator.toml
check "upgrade leaves the units enabled and running" sh -c 'systemctl is-enabled --quiet pidwarden-remediator && systemctl is-active --quiet pidwarden-exporter'
check "the remediator answers after the upgrade" poll 30 healthy
check "the audit trail survives the upgrade" poll 30 both_rows
journalctl -u pidwarden-remediator --no-pager -n 5 | sed 's/^/  journal: /'

docker rm -f "$ID" >/dev/null
check "apt-get purge" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q pidwarden >/dev/null'
check "no unit left" no_units
check "no binary left" gone /usr/bin/pidwarden-remediator
check "no /etc/pidwarden left" gone /etc/pidwarden
check "no state left" gone /var/lib/pidwarden
check "no user left" no_user
check "no service left running" no_daemons
exit "$failed"
