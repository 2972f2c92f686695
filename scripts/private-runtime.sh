# Shared by cri-node.sh and podman-service.sh (sourced, not run): the
# bookkeeping of a container runtime a test starts under its own directory.

# note_absent_cgroups MARKER NAME: lists in MARKER every cgroup hierarchy
# that has no NAME yet, so that `remove_created_cgroups` removes only what
# this runtime created.
note_absent_cgroups() {
    : >"$1"
    for c in /sys/fs/cgroup/*/; do
        [ -d "$c$2" ] || echo "$c" >>"$1"
    done
}

# remove_created_cgroups MARKER DIR...: removes the (empty) cgroups DIR…,
# deepest first, in the hierarchies MARKER lists.
remove_created_cgroups() {
    local marker=$1
    shift
    [ -f "$marker" ] || return 0
    while read -r c; do
        for d in "$@"; do rmdir "$c$d" 2>/dev/null || true; done
    done <"$marker"
    rm -f "$marker"
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
