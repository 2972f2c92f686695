# Shared by cri-node.sh and podman-service.sh (sourced, not run): the
# bookkeeping of a container runtime a test starts under its own directory.

# The parent cgroups a runtime creates (kubepods for containerd's pods,
# libpod_parent for Podman) are shared by every private runtime of the
# kit that runs at the same time. The first to claim NAME records which
# hierarchies had none; the last to release it removes what was recorded,
# so one runtime stopping never pulls them from under another, and nothing
# that existed before the first (a real node's) is touched.
# REGISTRY files live in the temporary directory beside the runtimes' own.
registry() { echo "${TMPDIR:-/tmp}/pidwarden-test-cgroups.$1"; }

# claim_cgroups NAME DIR: registers the runtime under DIR as a user of NAME.
claim_cgroups() {
    local reg
    reg=$(registry "$1")
    (
        flock 9
        if [ ! -f "$reg.created" ]; then
            : >"$reg.created"
            for c in /sys/fs/cgroup/*/; do
                [ -d "$c$1" ] || echo "$c" >>"$reg.created"
            done
        fi
        echo "$2" >>"$reg.users"
    ) 9>"$reg.lock"
}

# release_cgroups NAME DIR SUB...: unregisters DIR (and users whose
# directory is gone); when none is left, removes the empty cgroups SUB…
# (deepest first) from the hierarchies that had no NAME before.
release_cgroups() {
    local name=$1 dir=$2 reg c d u
    shift 2
    reg=$(registry "$name")
    (
        flock 9
        if [ -f "$reg.users" ]; then
            while read -r u; do
                [ "$u" != "$dir" ] && [ -d "$u" ] && echo "$u"
            done <"$reg.users" >"$reg.users.new"
            mv "$reg.users.new" "$reg.users"
        fi
        if [ ! -s "$reg.users" ] && [ -f "$reg.created" ]; then
            while read -r c; do
                for d in "$@"; do rmdir "$c$d" 2>/dev/null || true; done
            done <"$reg.created"
            rm -f "$reg.created" "$reg.users"
        fi
    ) 9>"$reg.lock"
}

# stop_pidfile FILE: SIGTERM to the pid in FILE, SIGKILL after 5 s.
stop_pidfile() {
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# umount_under DIR: lazily unmounts every mount below DIR, deepest first.
umount_under() {
    awk -v k="$1/" 'index($2, k) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}
