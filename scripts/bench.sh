#!/usr/bin/env bash
# Scrape-cost benchmark: pidwarden-exporter against prometheus-process-exporter.
#
#   scripts/bench.sh                                   # both default scenarios
#   scripts/bench.sh --containers 50 --procs 100       # one scenario
#   scripts/bench.sh --containers 50 --procs 100 --containers 200 --procs 50
#   options: --rounds N (30)  --interval SECS (0.5)  --no-build  --no-snapshot
#            --only pidwarden   measure pidwarden-exporter alone (no process-exporter)
#            --pe lean|both     process-exporter instances to measure (lean: only
#                               -gather-smaps=false -threads=false; default lean)
#            --modes "incremental full"   pidwarden-exporter --collect-mode values,
#                               one exporter each (default both)
#            --churn RATE       process starts (and as many exits) per second, spread
#                               over the containers (default 0: an unchanged host)
#            --cgroups          no Docker: fake Docker container cgroups
#                               (pids, memory) under pidwarden-test-bench-*, the same
#                               processes started by bench.py fake (busybox); the
#                               exporters run with --docker-host none
#            --append           add this run's records to bench/results.jsonl instead of
#                               replacing them (a scale curve over several runs)
#            --settle SECS      wait after the processes are up before measuring, so
#                               that none is young any more (default 65: incremental
#                               collection re-reads processes in their first minute)
#            --every SECS       scrape as Prometheus does: each exporter on its own clock,
#                               once every SECS (e.g. 15), --rounds scrapes; CPU per scrape
#                               is the exporter's whole CPU over the window / the scrapes
#            --young            measure while every process is in its first minute: no
#                               settling, one warm-up scrape (the exporter's first sight of
#                               the processes), then the scrapes that fit in the minute
#                               (with --every 15: 3, unless --rounds says otherwise)
#            --baseline BIN     also run BIN (another pidwarden-exporter build, incremental)
#                               side by side, as "pidwarden-exporter (baseline)": a before/after
#                               in one run
#            --profile   after measuring, strace -c and perf-profile pidwarden-exporter
#                        over 10 more scrapes (bench/profile-<N>x<M>-{strace,perf}.txt)
#   env: PIDWARDEN_EXPORTER_BIN overrides the exporter binary (default target/release)
#
# For every scenario it starts N busybox containers (`pidwarden-test-bench-<i>`,
# --network none) with M processes each (a shell plus M-1 sleeps), starts
# pidwarden-exporter and two prometheus-process-exporter instances (defaults,
# and -gather-smaps=false -threads=false) on 127.0.0.1, scrapes them in turn
# and measures CPU per scrape, scrape latency and memory (bench/bench.py).
# Results: bench/results.md (table + machine) and bench/results.jsonl (raw).
# Containers and exporters are removed on exit, on failure and on Ctrl-C too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

IMAGE="pidwarden-test-busybox:latest"
PREFIX="pidwarden-test-bench-"
ROUNDS=30
INTERVAL=0.5
BUILD=1
SNAPSHOT=1
PROFILE=0
ONLY=""
PE_SET="lean"
MODES="incremental full"
CHURN=0
SETTLE=65
EVERY=0
YOUNG=0
BASELINE=""
ROUNDS_SET=0
APPEND=0
FAKE=0
FAKE_PID=""
SCENARIOS=()
pending_containers=""

usage() { sed -n '2,/^set -e/{/^set -e/d;p}' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
    --containers) pending_containers="$2"; shift 2 ;;
    --procs)
        [[ -n "$pending_containers" ]] || { echo "--procs needs a --containers before it" >&2; exit 64; }
        SCENARIOS+=("${pending_containers}x$2"); pending_containers=""; shift 2 ;;
    --rounds) ROUNDS="$2"; ROUNDS_SET=1; shift 2 ;;
    --every) EVERY="$2"; shift 2 ;;
    --young) YOUNG=1; shift ;;
    --baseline) BASELINE="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-snapshot) SNAPSHOT=0; shift ;;
    --profile) PROFILE=1; shift ;;
    --pe)
        [[ "${2:-}" == lean || "${2:-}" == both ]] || { echo "--pe takes: lean, both" >&2; exit 64; }
        PE_SET="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --churn) CHURN="$2"; shift 2 ;;
    --settle) SETTLE="$2"; shift 2 ;;
    --append) APPEND=1; shift ;;
    --cgroups) FAKE=1; shift ;;
    --only)
        [[ "${2:-}" == pidwarden ]] || { echo "--only takes: pidwarden" >&2; exit 64; }
        ONLY="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done
[[ -z "$pending_containers" ]] || { echo "--containers $pending_containers needs a --procs" >&2; exit 64; }
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=("50x100" "200x50")
WARMUP=2
if [[ "$YOUNG" == 1 ]]; then
    SETTLE=0
    WARMUP=1
    if [[ "$ROUNDS_SET" == 0 ]]; then
        # the scrapes that fit in the processes' first minute after the warm-up
        ROUNDS="$(python3 -c "e=float('$EVERY') or float('$INTERVAL'); print(max(1, int(45 // e)))")"
    fi
fi

PE_BIN="$(command -v prometheus-process-exporter || true)"
[[ -n "$PE_BIN" || "$ONLY" == pidwarden ]] || { echo "prometheus-process-exporter not installed (apt-get install prometheus-process-exporter)" >&2; exit 1; }
[[ "$FAKE" == 1 ]] || docker info >/dev/null 2>&1 || { echo "docker is not reachable" >&2; exit 1; }

WORK="$(mktemp -d /tmp/pidwarden-bench.XXXXXX)"
EXPORTER_PIDS=()

stop_exporters() {
    local pid
    for pid in "${EXPORTER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${EXPORTER_PIDS[@]}"; do
        # bounded wait, then SIGKILL
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    EXPORTER_PIDS=()
}

remove_containers() {
    local ids
    if [[ "$FAKE" == 1 ]]; then
        if [[ -n "$FAKE_PID" ]]; then
            kill -TERM "$FAKE_PID" 2>/dev/null || true
            for _ in $(seq 1 700); do
                kill -0 "$FAKE_PID" 2>/dev/null || break
                sleep 0.1
            done
            wait "$FAKE_PID" 2>/dev/null || true
            FAKE_PID=""
        fi
        return 0
    fi
    ids="$(docker ps -aq --filter "name=${PREFIX}" 2>/dev/null || true)"
    if [[ -n "$ids" ]]; then
        echo "removing $(echo "$ids" | wc -l) benchmark containers" >&2
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null 2>&1 || true
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_exporters
    remove_containers
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# build and image

if [[ "$BUILD" == 1 ]]; then
    echo "building pidwarden-exporter (release)" >&2
    cargo build --release -p pidwarden-exporter
fi
# what the report names as the measured build (the tree may move on during a run)
dirty=""
git diff --quiet HEAD -- shared exporter 2>/dev/null || dirty=" with uncommitted changes in shared/ or exporter/"
export PIDWARDEN_BENCH_BUILD="${PIDWARDEN_BENCH_BUILD:-built from commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')${dirty} at $(date -u +%H:%M) UTC}"
PW_BIN="${PIDWARDEN_EXPORTER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pidwarden-exporter}"
[[ -x "$PW_BIN" ]] || { echo "$PW_BIN missing: run cargo build --release -p pidwarden-exporter" >&2; exit 1; }

if [[ "$FAKE" == 0 ]] && ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "building $IMAGE from the static busybox" >&2
    BB="$(command -v busybox || true)"
    [[ -n "$BB" ]] || { echo "busybox not found (apt-get install busybox-static)" >&2; exit 1; }
    file -L "$BB" 2>/dev/null | grep -q 'statically linked' ||
        echo "warning: $BB may not be statically linked" >&2
    mkdir -p "$WORK/image/bin"
    cp "$BB" "$WORK/image/bin/busybox"
    for applet in sh sleep cat ps; do ln -s busybox "$WORK/image/bin/$applet"; done
    printf 'FROM scratch\nCOPY bin /bin\nCMD ["/bin/sh"]\n' >"$WORK/image/Dockerfile"
    docker build -q -t "$IMAGE" "$WORK/image" >/dev/null
fi

# ---------------------------------------------------------------------------
# process-exporter config: every process, grouped by comm

cat >"$WORK/process-exporter.yml" <<'EOF'
process_names:
  - name: "{{.Comm}}"
    cmdline:
      - ".+"
EOF

log() { echo "[$(date +%T)] $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url, bounded to ~3 min (process-exporter's first pass over 10,000 processes is slow)
    local i
    for i in $(seq 1 180); do
        curl -fs -o /dev/null --max-time 60 "$1" && return 0
        sleep 0.5
    done
    echo "$1 did not answer" >&2
    return 1
}

# The process tree inside every container: the shell (PID 1) and M-1 sleeps.
# Most sleeps fall in two duplicate groups (`sleep 100000`, `sleep 200000`);
# every tenth has a command line of its own. With churn (second argument: the
# seconds between starts in one container), a loop shell starts a short
# `sleep` after the previous one exits: one start and one exit per period.
container_script() {
    if [[ -n "${2:-}" ]]; then
        echo "while :; do sleep $2; done &"
    fi
    cat <<EOF
i=1
while [ \$i -lt $1 ]; do
  if [ \$((i % 10)) -eq 0 ]; then sleep \$((300000 + i)) &
  elif [ \$((i % 2)) -eq 0 ]; then sleep 100000 &
  else sleep 200000 &
  fi
  i=\$((i + 1))
done
wait
EOF
}

start_fake() { # count, procs, churn period (optional)
    container_script "$2" "${3:-}" >"$WORK/script.sh"
    rm -f "$WORK/ids" "$WORK/dirs"
    python3 bench/bench.py fake --containers "$1" --script-file "$WORK/script.sh" \
        --ids-file "$WORK/ids" --dirs-file "$WORK/dirs" &
    FAKE_PID=$!
    for _ in $(seq 1 600); do
        [[ -s "$WORK/ids" ]] && return 0
        kill -0 "$FAKE_PID" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

start_containers() { # count, procs, churn period (optional)
    local n="$1" m="$2" script i attempt batch running
    if [[ "$FAKE" == 1 ]]; then
        start_fake "$@"
        return
    fi
    script="$(container_script "$m" "${3:-}")"
    : >"$WORK/start.err"
    # A start that fails (a busy daemon) is retried, up to three attempts.
    for attempt in 1 2 3; do
        running=" $(docker ps --format '{{.Names}}' --filter "name=${PREFIX}" | tr '\n' ' ') "
        batch=0
        for i in $(seq 1 "$n"); do
            [[ "$running" == *" ${PREFIX}${i} "* ]] && continue
            docker rm -f "${PREFIX}${i}" >/dev/null 2>&1 || true
            docker run -d --name "${PREFIX}${i}" --network none --label pidwarden.bench=1 \
                "$IMAGE" sh -c "$script" >/dev/null 2>>"$WORK/start.err" &
            batch=$((batch + 1))
            if [[ $batch -ge 8 ]]; then
                wait
                batch=0
            fi
        done
        wait
        docker ps -q --no-trunc --filter "name=${PREFIX}" >"$WORK/ids"
        [[ "$(wc -l <"$WORK/ids")" -eq "$n" ]] && return 0
        echo "attempt $attempt: $(wc -l <"$WORK/ids") of $n containers running" >&2
    done
    echo "only $(wc -l <"$WORK/ids") of $n containers are running:" >&2
    docker ps -a --filter "name=${PREFIX}" --filter status=exited --format '{{.Names}} {{.Status}}' | head -5 >&2
    head -5 "$WORK/start.err" >&2
    return 1
}

# ---------------------------------------------------------------------------

RESULTS="$ROOT/bench/results.jsonl"
: >"$WORK/results.jsonl"
STATUS=0

for scn in "${SCENARIOS[@]}"; do
    n="${scn%x*}"
    m="${scn#*x}"
    name="${n} × ${m}"
    period=""
    if [[ "$CHURN" != 0 ]]; then
        period="$(python3 -c "print(f'{$n / $CHURN:g}')")"
        name="${name}, churn ${CHURN}/s"
    fi
    [[ "$YOUNG" == 1 ]] && name="${name}, young"
    [[ "$EVERY" != 0 ]] && name="${name}, every ${EVERY} s"
    log "scenario ${name}: starting $n containers with $m processes each"
    remove_containers
    if ! start_containers "$n" "$m" "$period"; then
        echo "scenario ${name}: skipped, the containers did not start" >&2
        STATUS=1
        remove_containers
        continue
    fi
    log "containers started; waiting for $((n * m)) processes"
    count_args=(--ids-file "$WORK/ids")
    [[ "$FAKE" == 1 ]] && count_args=(--dirs-file "$WORK/dirs")
    if ! python3 bench/bench.py wait "${count_args[@]}" --expect "$((n * m))" --timeout 180; then
        echo "scenario ${name}: skipped, the processes did not all start" >&2
        STATUS=1
        remove_containers
        continue
    fi

    if [[ "$SETTLE" != 0 ]]; then
        log "settling ${SETTLE} s (no process young any more)"
        sleep "$SETTLE"
    fi
    urls=()
    targets=()
    pw_pid=""
    for mode in $MODES; do
        p1="$(free_port)"
        docker_args=()
        # the fake containers sit under their own parent (`<parent>/docker/<id>`),
        # which discovery accepts only when told (--cgroup-parent)
        [[ "$FAKE" == 1 ]] && docker_args=(--docker-host none --cgroup-parent "$(head -1 "$WORK/dirs" | cut -d/ -f6)")
        # debug lines of the group-memory refresh: its cost, stated apart
        RUST_LOG="${RUST_LOG:-info,pidwarden_exporter::group_memory=debug}" \
            "$PW_BIN" --listen "127.0.0.1:$p1" --collect-mode "$mode" "${docker_args[@]}" >"$WORK/pidwarden-$mode.log" 2>&1 &
        EXPORTER_PIDS+=("$!")
        [[ -n "$pw_pid" ]] || { pw_pid=$!; pw_url="http://127.0.0.1:$p1/metrics"; }
        urls+=("http://127.0.0.1:$p1/metrics")
        targets+=(--target "pidwarden,$!,http://127.0.0.1:$p1/metrics,pidwarden-exporter ($mode)")
    done
    if [[ -n "$BASELINE" ]]; then
        pb="$(free_port)"
        RUST_LOG="${RUST_LOG:-info,pidwarden_exporter::group_memory=debug}" \
            "$BASELINE" --listen "127.0.0.1:$pb" --collect-mode incremental "${docker_args[@]}" >"$WORK/pidwarden-baseline.log" 2>&1 &
        EXPORTER_PIDS+=("$!")
        urls+=("http://127.0.0.1:$pb/metrics")
        targets+=(--target "pidwarden,$!,http://127.0.0.1:$pb/metrics,pidwarden-exporter (baseline)")
    fi
    if [[ "$ONLY" != pidwarden ]]; then
        p2="$(free_port)"; p3="$(free_port)"
        if [[ "$PE_SET" == both ]]; then
            "$PE_BIN" -config.path "$WORK/process-exporter.yml" -web.listen-address "127.0.0.1:$p2" \
                >"$WORK/pe-default.log" 2>&1 &
            pe_pid=$!
            EXPORTER_PIDS+=("$pe_pid")
            urls+=("http://127.0.0.1:$p2/metrics")
            targets+=(--target "process-exporter,$pe_pid,http://127.0.0.1:$p2/metrics,process-exporter (defaults)")
        fi
        "$PE_BIN" -config.path "$WORK/process-exporter.yml" -web.listen-address "127.0.0.1:$p3" \
            -gather-smaps=false -threads=false >"$WORK/pe-lean.log" 2>&1 &
        pl_pid=$!
        EXPORTER_PIDS+=("$pl_pid")
        urls+=("http://127.0.0.1:$p3/metrics")
        targets+=(--target "process-exporter,$pl_pid,http://127.0.0.1:$p3/metrics,process-exporter (-gather-smaps=false -threads=false)")
    fi
    ready=1
    for u in "${urls[@]}"; do
        wait_http "$u" || ready=0
    done
    if [[ $ready == 0 ]]; then
        tail -n 20 "$WORK"/*.log >&2 || true
        echo "scenario ${name}: skipped, an exporter did not answer" >&2
        STATUS=1
        stop_exporters
        remove_containers
        continue
    fi

    log "exporters answer; measuring"
    snap_args=()
    [[ "$SNAPSHOT" == 1 ]] && snap_args=(--snapshot-bin "$PW_BIN")
    [[ "$SNAPSHOT" == 1 && "$FAKE" == 1 ]] && snap_args+=(--snapshot-arg=--docker-host=none
        "--snapshot-arg=--cgroup-parent=$(head -1 "$WORK/dirs" | cut -d/ -f6)")
    rc=0
    python3 bench/bench.py run --scenario "$name" --ids-file "$WORK/ids" \
        --containers "$n" --procs "$m" --rounds "$ROUNDS" --interval "$INTERVAL" \
        --every "$EVERY" --warmup "$WARMUP" --log-dir "$WORK" \
        "${targets[@]}" "${snap_args[@]}" --out "$WORK/results.jsonl" || rc=$?
    # interrupted (Ctrl-C, SIGTERM): stop here; the EXIT trap cleans up
    [[ $rc -ge 128 ]] && exit "$rc"
    if [[ $rc -ne 0 ]]; then
        echo "scenario ${name}: measurement reported a problem (exit $rc)" >&2
        tail -n 5 "$WORK"/pidwarden-*.log >&2 || true
        STATUS=1
    fi
    if [[ "$PROFILE" == 1 ]]; then
        log "profiling pidwarden-exporter (strace, perf)"
        prof_args=()
        tag="${scn}$([[ "$CHURN" != 0 ]] && echo "-churn${CHURN}")-$(echo "$MODES" | cut -d' ' -f1)"
        command -v strace >/dev/null && prof_args+=(--strace-out "$ROOT/bench/profile-${tag}-strace.txt")
        command -v perf >/dev/null && prof_args+=(--perf-out "$ROOT/bench/profile-${tag}-perf.txt")
        if [[ ${#prof_args[@]} -gt 0 ]]; then
            python3 bench/bench.py profile --pid "$pw_pid" --url "$pw_url" \
                "${prof_args[@]}" || echo "profiling failed" >&2
        else
            echo "neither strace nor perf is installed: no profile" >&2
        fi
    fi
    stop_exporters
    remove_containers
done

if [[ ! -s "$WORK/results.jsonl" ]]; then
    echo "no scenario produced results" >&2
    exit 1
fi
if [[ "$APPEND" == 1 ]]; then
    cat "$WORK/results.jsonl" >>"$RESULTS"
else
    cp "$WORK/results.jsonl" "$RESULTS"
fi
python3 bench/bench.py report --input "$RESULTS" --output "$ROOT/bench/results.md" --notes "$ROOT/bench/notes.md"
exit "$STATUS"
