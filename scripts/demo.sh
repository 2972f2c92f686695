#!/usr/bin/env bash
# The pidwarden control loop on this machine, in one command:
#
#   scripts/demo.sh            # runs ~90 s, then cleans everything up
#   scripts/demo.sh --keep     # leaves it running until Ctrl-C
#   scripts/demo.sh --duration 60
#
# It builds the exporter and the remediator (cargo build --release), starts
# dockerd when `docker info` fails (as scripts/test.sh does), then starts on
# 127.0.0.1 only:
#   - a leaking container: its init starts one more copy of the same
#     "server" every 2 s and never stops them (PID limit 80);
#   - pidwarden-exporter, Prometheus with alerts/pidwarden.rules.yml,
#     Alertmanager with a config derived from alerts/alertmanager.yml, and
#     pidwarden-remediator (bearer token, cooldown 10 s, sampling 1 s,
#     grace 1 s).
# DEMO TIMINGS, NOT PRODUCTION ONES: every non-zero `for:` of the rules is
# shortened to 2s, Prometheus scrapes and evaluates every 1s, and
# Alertmanager's group_wait/group_interval/repeat_interval are 1s, so the
# loop reacts in seconds instead of minutes.
#
# Every 5 s it prints the container's tasks/limit, surplus duplicates, the
# firing alerts (Prometheus /api/v1/alerts) and the remediator's decisions
# since the previous line (GET /api/v1/actions). On exit (or Ctrl-C) it stops what it
# started, by PID, removes the container and its temp directory.
#
# Needs: root (cgroups, /proc, the Docker socket), docker.io, busybox-static,
# prometheus, prometheus-alertmanager, python3, a Rust toolchain.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

KEEP=0
DURATION=90
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=1 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

LIMIT=80
IMAGE=pidwarden-test-busybox:latest
FOR=2s
PROMETHEUS=/usr/bin/prometheus
ALERTMANAGER=/usr/bin/prometheus-alertmanager

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
for tool in docker python3 "$PROMETHEUS" "$ALERTMANAGER" cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (the exporter reads every process, the remediator signals them)" >&2; exit 1; }

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pidwarden-demo.XXXXXX")
NAME="pidwarden-demo-$$"
PIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo
    say "cleaning up"
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    docker rm -f -v "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    echo "stopped ${#PIDS[@]} daemons, removed container $NAME and $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_url() {
    local url=$1 what=$2 log=$3 i
    for i in $(seq 1 120); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "error: $what did not come up; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    return 1
}

# --- build, docker, image --------------------------------------------------

say "building pidwarden-exporter and pidwarden-remediator (release)"
cargo build --release -q -p pidwarden-exporter -p pidwarden-remediator
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
EXPORTER=$TARGET/release/pidwarden-exporter
REMEDIATOR=$TARGET/release/pidwarden-remediator

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log: $WORK/dockerd.log; it keeps running afterwards)"
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >>"$WORK/dockerd.log" 2>&1 </dev/null &
    for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "error: dockerd did not answer" >&2; exit 1; }
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "building $IMAGE (FROM scratch + the host's static busybox)"
    ctx="$WORK/image"
    mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/root"
    chmod 1777 "$ctx/rootfs/tmp"
    cp /bin/busybox "$ctx/rootfs/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$ctx/rootfs/bin/$a"
    done
    printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null
fi

# --- the leaking container ---------------------------------------------------

say "starting the leaking container $NAME (--pids-limit $LIMIT, one more server copy every 2 s)"
# Each copy: `sh -c "$SERVER"` → `sh -c "$IDLE"` → `sleep 1` (3 tasks). The
# first copy to create /serving is the active one (it burns some CPU, like a
# server answering a client); pidwarden must keep it. Init counts its live
# copies with shell builtins and reaps the dead ones in its `sleep`, like a
# gateway's event loop; it never stops starting new ones (same workload as
# scenario A of tests/tests/e2e_loop.rs).
ID=$(docker run -d --network none --name "$NAME" --pids-limit "$LIMIT" \
    -e 'SERVER=if mkdir /serving 2>/dev/null; then echo $$ > /serving/pid; sh -c "$BUSY"; else sh -c "$IDLE"; fi; true' \
    -e 'BUSY=while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.1; done' \
    -e 'IDLE=while :; do sleep 1; done' \
    -e EVERY=2 -e CAP=1000 \
    "$IMAGE" sh -c 'rm -rf /serving; pids=""; while :; do n=0; alive="";
        for p in $pids; do s=""; { read -r _ _ s _ < /proc/$p/stat; } 2>/dev/null;
            case "$s" in ""|Z|X) ;; *) alive="$alive $p"; n=$((n+1)) ;; esac; done;
        pids=$alive; if [ $n -lt $CAP ]; then sh -c "$SERVER" & pids="$pids $!"; fi;
        sleep $EVERY; done')
PIDS_DIR=""
for d in "/sys/fs/cgroup/pids/docker/$ID" "/sys/fs/cgroup/system.slice/docker-$ID.scope" "/sys/fs/cgroup/docker/$ID"; do
    [ -f "$d/pids.current" ] && PIDS_DIR=$d && break
done

# --- the loop ----------------------------------------------------------------

EXP_PORT=$(free_port); REM_PORT=$(free_port); PROM_PORT=$(free_port); AM_PORT=$(free_port); OPS_PORT=$(free_port)
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$TOKEN" >"$WORK/webhook-token"
chmod 600 "$WORK/webhook-token"

say "starting pidwarden-exporter on 127.0.0.1:$EXP_PORT"
"$EXPORTER" --listen "127.0.0.1:$EXP_PORT" >"$WORK/exporter.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$EXP_PORT/metrics" exporter "$WORK/exporter.log"

say "starting pidwarden-remediator on 127.0.0.1:$REM_PORT (cooldown 10 s, sample 1 s, grace 1 s)"
"$REMEDIATOR" --listen "127.0.0.1:$REM_PORT" --token-file "$WORK/webhook-token" \
    --state-dir "$WORK/remediator" --cooldown 10 --sample 1 --grace 1 >"$WORK/remediator.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$REM_PORT/healthz" remediator "$WORK/remediator.log"

say "starting Alertmanager on 127.0.0.1:$AM_PORT (alerts/alertmanager.yml, group_wait/group_interval/repeat_interval 1s)"
sed -E \
    -e "s#http://127.0.0.1:9918/api/v1/alerts#http://127.0.0.1:$REM_PORT/api/v1/alerts#" \
    -e "s#credentials_file: .*#credentials_file: $WORK/webhook-token#" \
    -e "s#http://127.0.0.1:9099/alerts#http://127.0.0.1:$OPS_PORT/alerts#" \
    -e 's/^([[:space:]]*)(group_wait|group_interval|repeat_interval): .*/\1\2: 1s/' \
    alerts/alertmanager.yml >"$WORK/alertmanager.yml"
"$ALERTMANAGER" --config.file="$WORK/alertmanager.yml" --storage.path="$WORK/am" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$WORK/alertmanager.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$AM_PORT/-/ready" alertmanager "$WORK/alertmanager.log"

say "starting Prometheus on 127.0.0.1:$PROM_PORT (alerts/pidwarden.rules.yml with every non-zero for: shortened to $FOR)"
sed -E "s/^([[:space:]]*)for: ([1-9][0-9]*[smhd]).*/\1for: $FOR/" alerts/pidwarden.rules.yml >"$WORK/pidwarden.rules.yml"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/pidwarden.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$AM_PORT']
scrape_configs:
  - job_name: pidwarden-exporter
    static_configs:
      - targets: ['127.0.0.1:$EXP_PORT']
    # Only the demo container (and the exporter's own series): other
    # containers on this host never reach the remediator.
    metric_relabel_configs:
      - source_labels: [id]
        regex: '($ID|)'
        action: keep
  - job_name: pidwarden-remediator
    static_configs:
      - targets: ['127.0.0.1:$REM_PORT']
EOF
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_url "http://127.0.0.1:$PROM_PORT/-/ready" prometheus "$WORK/prometheus.log"

cat <<EOF

  Prometheus    http://127.0.0.1:$PROM_PORT   (alerts: /alerts)
  Alertmanager  http://127.0.0.1:$AM_PORT
  exporter      http://127.0.0.1:$EXP_PORT/metrics
  remediator    http://127.0.0.1:$REM_PORT/metrics  (audit: curl -H "Authorization: Bearer \$(cat $WORK/webhook-token)" http://127.0.0.1:$REM_PORT/api/v1/actions)
  logs          $WORK/*.log

  The container grows by 3 tasks every 2 s. At 80% of its limit (64 tasks) with
  3 or more surplus copies, PidwardenDuplicatesExhaustingPids fires and the
  remediator kills the idle copies, keeping the busy one.

EOF

# --- watch -------------------------------------------------------------------

status() {
    local tasks limit refused
    tasks=$(cat "$PIDS_DIR/pids.current" 2>/dev/null || echo '?')
    limit=$(cat "$PIDS_DIR/pids.max" 2>/dev/null || echo '?')
    refused=$(awk '$1 == "max" {print $2}' "$PIDS_DIR/pids.events" 2>/dev/null || echo '?')
    PROM=$PROM_PORT REM=$REM_PORT TOKEN=$TOKEN ID=$ID TASKS=$tasks LIMIT=$limit REFUSED=$refused SEEN=$WORK/seen \
    T=$(($(date +%s) - START)) python3 - <<'PY'
import json, os, urllib.parse, urllib.request

def get(url, headers=None):
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=3) as r:
            return json.load(r)
    except Exception:
        return {}

prom = "http://127.0.0.1:%s" % os.environ["PROM"]
q = urllib.parse.quote('pidwarden_container_duplicate_processes{id="%s"}' % os.environ["ID"])
res = get("%s/api/v1/query?query=%s" % (prom, q)).get("data", {}).get("result", [])
dups = res[0]["value"][1] if res else "?"
alerts = get(prom + "/api/v1/alerts").get("data", {}).get("alerts", [])
firing = sorted({a["labels"]["alertname"] for a in alerts if a.get("state") == "firing"})
pending = sorted({a["labels"]["alertname"] for a in alerts if a.get("state") == "pending"})
print("[+%3ss] tasks %s/%s  surplus duplicates %s  refused forks %s" % (
    os.environ["T"], os.environ["TASKS"], os.environ["LIMIT"], dups, os.environ["REFUSED"]))
print("        firing: %s%s" % (", ".join(firing) or "-",
      ("   (pending: %s)" % ", ".join(pending)) if pending else ""))
# Decisions since the last status line (the audit trail, newest first).
seen_file = os.environ["SEEN"]
try:
    seen = int(open(seen_file).read())
except (OSError, ValueError):
    seen = 0
rows = get("http://127.0.0.1:%s/api/v1/actions?limit=20" % os.environ["REM"],
           {"Authorization": "Bearer " + os.environ["TOKEN"]}).get("actions", [])
for r in sorted(rows, key=lambda r: r["id"]):
    if r["id"] <= seen or r.get("result") == "pending":
        continue
    seen = r["id"]
    procs = len(r.get("processes") or [])
    print("        remediator #%s %s %s -> %s (%d processes): %s" % (
        r["id"], r["alertname"], r["action"], r["result"], procs, r["reason"][:100]))
open(seen_file, "w").write(str(seen))
PY
}

START=$(date +%s)
if [ "$KEEP" = 1 ]; then
    say "watching until Ctrl-C"
else
    say "watching for ${DURATION}s (--keep to leave it running)"
fi
while :; do
    status
    if [ "$KEEP" != 1 ] && [ $(($(date +%s) - START)) -ge "$DURATION" ]; then
        break
    fi
    sleep 5
done

say "audit trail (pidwarden-remediator history)"
"$REMEDIATOR" history --state-dir "$WORK/remediator" --limit 20 || true
