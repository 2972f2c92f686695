#!/usr/bin/env bash
# README's quick start, as a reader runs it: a fresh `git clone` of this
# checkout, then every ```sh block that README marks with `<!-- quickstart -->`,
# in README's order, line for line, in one shell (so the `&` daemons of one
# block are the `%1 %2` of a later one). Between the blocks it checks what the
# reader is told to see:
#   1. the exporter's /metrics names the running container `leaky`, with its
#      tasks, PID limit and 19 surplus copies;
#   2. the authenticated alert is answered, the audit trail records `dry_run`
#      for it (the shipped config), and all 20 copies still run;
#   3. README's clean-up leaves no container, daemon or file behind.
#
# What this machine lacks, and how it is provided without touching README's
# lines: no registry, so the local busybox image (scripts/test.sh builds
# pidwarden-test-busybox:latest) is tagged `busybox` for the run when no
# `busybox` image exists; the clone's `target` is a link to this checkout's
# target directory (or CARGO_TARGET_DIR's), so README's `cargo build` reuses
# what the suite built and its `target/debug/...` paths hold.
# Needs root, docker, git, curl, a Rust toolchain and protoc. Cleans up after
# itself, on failure too.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/pidwarden-test-quickstart.XXXXXX")
clone=$work/pidwarden
tagged=0
failed=0

wd=
cleanup() {
    local pids
    [ -n "$wd" ] && kill -- -"$wd" 2>/dev/null
    pids=$(jobs -p)
    [ -n "$pids" ] && kill $pids 2>/dev/null
    [ -n "$pids" ] && wait $pids 2>/dev/null
    timeout 60 docker rm -f leaky >/dev/null 2>&1
    [ $tagged -eq 1 ] && docker rmi busybox:latest >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() {
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=$((failed + 1)); fi
}

# The blocks: each ```sh fence that follows a `<!-- quickstart -->` line.
awk -v dir="$work" '
    /^<!-- quickstart -->$/ { marked = 1; next }
    marked && /^```sh$/ { n++; inside = 1; marked = 0; next }
    inside && /^```$/ { inside = 0; next }
    inside { print > (dir "/block" n ".sh") }
    { marked = 0 }
' README.md
blocks=$(ls "$work"/block*.sh 2>/dev/null | wc -l)
if [ "$blocks" -ne 3 ]; then
    echo "README.md has $blocks quick-start blocks; this test knows three (start and look, the alert, clean up)" >&2
    exit 1
fi

if docker inspect leaky >/dev/null 2>&1; then
    echo "a container named leaky exists already; README's quick start would clash with it" >&2
    exit 1
fi
for port in 9917 9918; do
    if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/"; then
        echo "127.0.0.1:$port is taken; README's quick start listens there" >&2
        exit 1
    fi
done
if ! docker image inspect busybox:latest >/dev/null 2>&1; then
    docker tag pidwarden-test-busybox:latest busybox:latest || exit 1
    tagged=1
fi
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
unset CARGO_TARGET_DIR
mkdir -p "$target_dir" || exit 1

# Every wait is bounded: README's commands have no timeouts of their own, so
# after PIDWARDEN_QUICKSTART_TIMEOUT seconds (default 900; the build is most
# of it) the shell is told to stop and its children (the command in the
# foreground, README's daemons) are ended, which runs the clean-up. Taken out
# of the job table, so that README's `%1 %2` stay its daemons.
# (The watchdog runs in a session of its own, so that the clean-up ends it and
# its sleep together.)
setsid bash -c 'sleep "$1"; echo "quickstart: no verdict within $1 s" >&2; kill -TERM "$2"; pkill -TERM -P "$2"' \
    watchdog "${PIDWARDEN_QUICKSTART_TIMEOUT:-900}" $$ </dev/null >&2 &
wd=$!
disown "$wd"

git clone -q "$ROOT" "$clone" || exit 1
cd "$clone" || exit 1
ln -s "$target_dir" target || exit 1
echo "fresh clone of $(git rev-parse --short HEAD) in $clone"

# run N: sources block N in this shell, its output kept in out N.
run() {
    echo "--- README quick start, block $1:"
    sed 's/^/    /' "$work/block$1.sh"
    # shellcheck disable=SC1090
    source "$work/block$1.sh" >"$work/out$1" 2>&1
    sed 's/^/  | /' "$work/out$1" | grep -v '^  | .*level=\|INFO\|WARN' | head -n 40
}

id=
copies() { docker exec leaky ps -o args 2>/dev/null | grep -c '^sleep 1000$'; }
metric() { # NAME: its value for leaky in block 1's output
    grep "^pidwarden_container_$1{" "$work/out1" | grep "id=\"$id\"" | grep -o '[0-9.e+]*$'
}
is() { [ "$1" = "$2" ]; }
# history's row: ROW TIME ALERT (cut to its column) CONTAINER ACTION RESULT …
history_has() { grep -E '^1 +[^ ]+ +PidwardenDuplicatesExhausti[^ ]* +leaky +kill-duplicates +dry_run ' "$work/out2" >/dev/null; }
answered() { grep -q '^{"results":\[{"action":"kill-duplicates","fingerprint":"demo",' "$work/out2"; }
none_left() {
    ! docker inspect leaky >/dev/null 2>&1 && [ ! -e demo.token ] && [ ! -e demo-state ] &&
        ! curl -s --max-time 2 -o /dev/null http://127.0.0.1:9917/ &&
        ! curl -s --max-time 2 -o /dev/null http://127.0.0.1:9918/
}

run 1
id=$(docker inspect -f '{{.Id}}' leaky 2>/dev/null)
check "the container leaky runs" test -n "$id"
check "its tasks are shown (21: sh and 20 copies)" is "$(metric tasks)" 21
check "its PID limit is shown (100)" is "$(metric pids_limit)" 100
check "its 19 surplus copies are shown" is "$(metric duplicate_processes)" 19

run 2
check "the alert is answered" answered
check "history records dry_run for it" history_has
check "dry-run killed nothing (20 copies run)" is "$(copies)" 20

run 3
sleep 2
check "clean-up leaves no container, daemon or file" none_left

echo "quickstart: $failed failed"
exit $((failed > 0))
