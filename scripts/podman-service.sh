#!/usr/bin/env bash
# Podman of the test's own, with its Docker-compatible API service.
#
#   scripts/podman-service.sh up DIR     # start; prints the API socket path
#   scripts/podman-service.sh down DIR   # remove its containers, stop it
#   scripts/podman-service.sh podman DIR ARGS...   # podman with DIR's flags
#
# Everything lives under DIR (--root, --runroot, --tmpdir, the socket).
# Flags these machines need: --cgroup-manager cgroupfs (containers under
# /libpod_parent), --events-backend file (no journald); containers are run
# with --network none (the default network wants a bridge and iptables) and
# lower ulimits (runc fails raising them to podman's defaults). The image
# docker.io/library/kbox:1 is built from /bin/busybox by mkimage.py.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=private-runtime.sh
. "$HERE/private-runtime.sh"
cmd=${1:-}
K=${2:-}
[ -n "$cmd" ] && [ -n "$K" ] || { echo "usage: $0 up|down|podman DIR [ARGS...]" >&2; exit 2; }
shift 2
mkdir -p "$K"
K=$(cd "$K" && pwd)
SOCK="$K/podman.sock"
PODMAN=(podman --root "$K/root" --runroot "$K/run" --tmpdir "$K/tmp"
    --cgroup-manager cgroupfs --events-backend file)
podman_() { "${PODMAN[@]}" "$@"; }
# The cgroups podman creates with cgroupfs: shared with the kit's other
# private Podman services, removed by the last `down` (private-runtime.sh).
PARENTS="libpod_parent/conmon libpod_parent"

up() {
    : >"$K/podman-service"
    claim_cgroups libpod_parent "$K"
    python3 "$HERE/mkimage.py" "$K/kbox.tar" kbox:1
    podman_ load -q -i "$K/kbox.tar" >/dev/null
    # Started directly (not through a function) so that $! is podman's pid.
    "${PODMAN[@]}" system service --time=0 "unix://$SOCK" >"$K/service.log" 2>&1 &
    echo $! >"$K/service.pid"
    for _ in $(seq 200); do
        [ -S "$SOCK" ] && break
        sleep 0.05
    done
    [ -S "$SOCK" ] || { echo "podman service did not start (log: $K/service.log)" >&2; exit 1; }
    echo "$SOCK"
}

down() {
    podman_ rm -af -t 0 >/dev/null 2>&1 || true
    stop_pidfile "$K/service.pid"
    umount_under "$K"
    # shellcheck disable=SC2086
    release_cgroups libpod_parent "$K" $PARENTS
    rm -rf "$K/root" "$K/run" "$K/tmp" "$SOCK"
}

case "$cmd" in
up) up ;;
down) down ;;
podman) podman_ "$@" ;;
*) echo "usage: $0 up|down|podman DIR [ARGS...]" >&2; exit 2 ;;
esac
