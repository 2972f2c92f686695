#!/usr/bin/env bash
# A Kubernetes node's container runtime without a kubelet or an API server:
# a private containerd with its CRI plugin, for tests that drive pods through
# CRI as the kubelet does.
#
#   scripts/cri-node.sh up DIR     # start; prints the CRI socket path
#   scripts/cri-node.sh down DIR   # stop everything `up` started
#
# Everything lives under DIR: config, root, state, socket, logs. Docker's own
# containerd (which runs with the CRI plugin disabled) is left alone.
# Settings these machines need: restrict_oom_score_adj (no CAP_SYS_RESOURCE
# for the sandbox's oom_score_adj of -998), cgroupfs (SystemdCgroup = false).
# Host-network sandboxes must come without a hostname (runc refuses one
# without a private UTS namespace), as the kubelet sends them.
# The images docker.io/library/kbox:1 and kpause:1 (the sandbox image) are
# built from /bin/busybox by mkimage.py and imported into the k8s.io
# namespace.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=private-runtime.sh
. "$HERE/private-runtime.sh"
cmd=${1:-}
K=${2:-}
[ -n "$cmd" ] && [ -n "$K" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
mkdir -p "$K"
K=$(cd "$K" && pwd)
SOCK="$K/containerd.sock"
ctr_() { ctr -a "$SOCK" -n k8s.io "$@"; }

# The kubepods cgroups containerd creates for pods: shared with the kit's
# other private nodes, removed by the last `down` (private-runtime.sh).
KUBEPODS="kubepods/besteffort kubepods"

up() {
    mkdir -p "$K/cni/bin" "$K/cni/net.d" "$K/logs"
    : >"$K/cri-node"
    claim_cgroups kubepods "$K"
    cat >"$K/config.toml" <<TOML
version = 2
root = "$K/root"
state = "$K/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$K/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/kpause:1"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$K/cni/bin"
    conf_dir = "$K/cni/net.d"
TOML
    containerd --config "$K/config.toml" >"$K/containerd.log" 2>&1 &
    echo $! >"$K/containerd.pid"
    for _ in $(seq 200); do
        ctr -a "$SOCK" version >/dev/null 2>&1 && break
        sleep 0.05
    done
    if ! ctr -a "$SOCK" plugins ls 2>/dev/null | grep -q 'grpc.v1 *cri .*ok'; then
        echo "containerd's CRI plugin is not ok (log: $K/containerd.log)" >&2
        tail -20 "$K/containerd.log" >&2 || true
        exit 1
    fi
    local image
    for image in kpause kbox; do
        python3 "$HERE/mkimage.py" "$K/$image.tar" "$image:1"
        ctr_ images import "$K/$image.tar" >/dev/null
    done
    echo "$SOCK"
}

down() {
    if [ -S "$SOCK" ]; then
        for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$id" || true; done
        for _ in $(seq 20); do
            [ -z "$(ctr_ tasks ls -q 2>/dev/null | head -1)" ] && break
            for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
            sleep 0.1
        done
        for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
    fi
    stop_pidfile "$K/containerd.pid"
    # Sandbox shm and rootfs overlays.
    umount_under "$K"
    # shellcheck disable=SC2086
    release_cgroups kubepods "$K" $KUBEPODS
    rm -rf "$K/root" "$K/state" "$K/opt" "$K/logs" "$SOCK" "$SOCK.ttrpc"
}

case "$cmd" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
