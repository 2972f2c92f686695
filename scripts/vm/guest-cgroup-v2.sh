# Runs inside the VM guest (busybox sh, cgroup2 on /sys/fs/cgroup), booted by
# scripts/vm/initramfs.sh with pidwarden-exporter and pidwarden-vm-helper in
# /bin. Builds the cgroup v2 layouts real hosts make, puts workloads in them,
# and prints the kernel's own files beside what the exporter reports; the
# comparison is made on the host (tests/tests/cgroup_v2_kernels.rs).
#
# Output sections (one line each, then their content):
#   === info KEY VALUE...
#   === workload NAME LINE       what a helper did (e.g. refused forks)
#   === state LABEL              then D lines (one per cgroup directory) and
#                                P lines (one per process)
#   === snapshot LABEL MODE      then `snapshot --json`
#   === metrics LABEL MODE       then a /metrics body
#   === done
set -u
C=/sys/fs/cgroup
H=/bin/pidwarden-vm-helper
X=/bin/pidwarden-exporter
NONE="--docker-host none --podman-host none --cri-endpoint none"

id() { echo "$1" | sha256sum | cut -c1-64; }
uid() { echo "$1" | md5sum | sed 's/^\(........\)\(....\)\(....\)\(....\)\(............\).*/\1-\2-\3-\4-\5/'; }

# mkcg REL: creates the cgroup and enables pids and memory for the children
# of every ancestor on the way.
mkcg() {
    local p="" c
    for c in $(echo "$1" | tr '/' ' '); do
        [ -n "$p" ] || { p=$c; mkdir -p "$C/$p"; continue; }
        grep -q pids "$C/$p/cgroup.subtree_control" || echo "+pids +memory" >"$C/$p/cgroup.subtree_control"
        p=$p/$c
        mkdir -p "$C/$p"
    done
}
# run REL OUT CMD...: starts CMD in cgroup REL, its stdout to OUT.
run() {
    local rel=$1 out=$2
    shift 2
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$C/$rel" "$@" >"$out" 2>&1 &
}
# await FILE WORD: waits (bounded) until FILE has a line starting with WORD.
await() {
    local i=0
    while ! grep -q "^$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "=== info timeout waiting for $2 in $1"; return 1; }
        usleep 100000
    done
}
v() { cat "$1" 2>/dev/null | head -n 1; }

state() {
    echo "=== state $1"
    $H dump
}
snapshots() {
    for m in incremental full; do
        echo "=== snapshot $1 $m"
        $X $NONE --collect-mode $m snapshot --json 2>/tmp/snap.err || echo "=== info snapshot-failed $1 $m $(tr '\n' ' ' </tmp/snap.err)"
    done
}
scrape() {
    for m in incremental:9101 full:9102; do
        echo "=== metrics $1 ${m%:*}"
        $H get "http://127.0.0.1:${m#*:}/metrics" 2>/tmp/get.err || echo "=== info scrape-failed $1 $m $(cat /tmp/get.err)"
    done
}

echo "+pids +memory" >$C/cgroup.subtree_control
echo "=== info kernel $(uname -r)"
echo "=== info mount $(grep ' cgroup2 ' /proc/self/mountinfo | sed 's/.* - //')"

# --- layouts and workloads ----------------------------------------------------
A=docker/$(id dockerfs)
B=system.slice/docker-$(id dockersd).scope
U1=$(uid k8s-sd)
POD1=kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod$(echo $U1 | tr - _).slice
K1=$POD1/cri-containerd-$(id k8s-sd-app).scope
K0=$POD1/cri-containerd-$(id k8s-sd-pause).scope
POD2=kubepods/burstable/pod$(uid k8s-fs)
D1=$POD2/$(id k8s-fs-one)
D2=$POD2/$(id k8s-fs-two)
E=machine.slice/libpod-$(id podman).scope
F=docker/$(id threaded)
G=docker/$(id lifecycle)
for n in dockerfs:$A dockersd:$B k8s-sd-app:$K1 k8s-sd-pause:$K0 k8s-fs-one:$D1 k8s-fs-two:$D2 podman:$E threaded:$F lifecycle:$G; do
    echo "=== info container ${n%%:*} ${n#*:}"
done
echo "=== info pod k8s-sd $POD1"
echo "=== info pod k8s-fs $POD2"

# Docker, cgroupfs driver: three copies of one command, three zombies.
mkcg $A
run $A /tmp/a.sh sh -c 'sleep 1000 & sleep 1000 & sleep 1000 & wait'
run $A /tmp/a.out $H zombies 3
# ... and a burst of eight short-lived tasks: its pids.peak stays above
# what is left once they are gone.
run $A /tmp/a-burst.out sh -c 'for i in 1 2 3 4 5 6 7 8; do usleep 300000 & done; wait; echo burst done'
await /tmp/a-burst.out burst

# Docker, systemd driver, its own pids limit: forks refused at it.
mkcg $B
echo 16 >$C/$B/pids.max
run $B /tmp/b.out $H forks 30

# Kubernetes, systemd driver: a pod-level limit, a sandbox and one container
# whose forks the pod's limit refuses.
mkcg $K0
mkcg $K1
echo 10 >$C/$POD1/pids.max
run $K0 /tmp/k0.out sleep 1002
usleep 200000
run $K1 /tmp/k1.out $H forks 20

# Kubernetes, cgroupfs driver: a pod limit shared by two containers, one with
# a limit of its own that refuses first; the other then fills the pod.
mkcg $D1
mkcg $D2
echo 12 >$C/$POD2/pids.max
echo 3 >$C/$D2/pids.max
run $D2 /tmp/d2.out $H forks 6
await /tmp/d2.out forks
run $D1 /tmp/d1.out $H forks 20

# Podman (crun): processes in a `container` sub-cgroup of the scope, which
# holds the limits: an OOM kill, then forks refused at the scope's limit.
mkcg $E/container
echo 8 >$C/$E/pids.max
echo 24M >$C/$E/memory.max
run $E/container /tmp/e-hog.out $H hog 96
hog=$!
wait $hog
echo "=== workload podman-hog exit=$? $(cat /tmp/e-hog.out | tr '\n' ' ')"
run $E/container /tmp/e.out $H forks 12

# A container with a threaded child cgroup holding two of a process's threads.
mkcg $F
run $F /tmp/f.out $H threads 4
run $F /tmp/f.sh sh -c 'sleep 1001 & sleep 1001 & wait'
await /tmp/f.out threads
mkdir $C/$F/worker
echo threaded >$C/$F/worker/cgroup.type
for t in $(sed -n 's/^threads //p' /tmp/f.out | cut -d' ' -f1-2); do echo $t >$C/$F/worker/cgroup.threads; done

for w in a:zombies b:forks k1:forks d2:forks d1:forks e:forks f:threads; do
    await /tmp/${w%:*}.out ${w#*:}
done
for w in dockerfs:a dockersd:b k8s-sd-app:k1 k8s-fs-two:d2 k8s-fs-one:d1 podman:e threaded:f; do
    echo "=== workload ${w%:*} $(cat /tmp/${w#*:}.out)"
done
usleep 500000

# --- one collection per mode --------------------------------------------------
state before
snapshots steady
state after

# --- daemons, both modes, a container created and removed between scrapes ----
$X $NONE --listen 127.0.0.1:9101 --collect-mode incremental 2>/tmp/x1.err &
x1=$!
$X $NONE --listen 127.0.0.1:9102 --collect-mode full 2>/tmp/x2.err &
x2=$!
i=0
until $H get http://127.0.0.1:9101/metrics >/dev/null 2>&1 && $H get http://127.0.0.1:9102/metrics >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "=== info daemons-not-ready $(cat /tmp/x1.err /tmp/x2.err | tr '\n' ' ')"; break; }
    usleep 200000
done
scrape first
mkcg $G
run $G /tmp/g.sh sh -c 'sleep 1003 & sleep 1003 & wait'
usleep 500000
state created
scrape created
for p in $(cat $C/$G/cgroup.procs); do kill -9 $p; done
i=0
while [ -s $C/$G/cgroup.procs ] || [ "$(v $C/$G/pids.current)" != 0 ]; do
    i=$((i + 1)); [ $i -lt 100 ] || break; usleep 100000
done
rmdir $C/$G && echo "=== info removed $G"
scrape removed
kill $x1 $x2
wait $x1 $x2 2>/dev/null

# --- 6.12 and later: fork failures counted where the task forked --------------
if mount -o remount,pids_localevents $C 2>/dev/null; then
    echo "=== info mount $(grep ' cgroup2 ' /proc/self/mountinfo | sed 's/.* - //')"
    state localevents-before
    snapshots localevents
    state localevents-after
else
    echo "=== info localevents unsupported"
fi
echo "=== done"
