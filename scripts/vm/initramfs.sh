#!/usr/bin/env bash
# Boots a cgroup v2 kernel under QEMU (software emulation) with a busybox
# initramfs that runs one test script, and prints what the script printed.
#
#   scripts/vm/initramfs.sh KERNEL SCRIPT [FILE...]
#
# KERNEL   6.1 or 6.12 (CACHE/vmlinuz-KERNEL, fetched by scripts/vm/kernels.sh
#          when missing) or the path of a vmlinuz
# SCRIPT   run by the guest's init with busybox sh, in / , as root; the guest
#          has proc, sysfs, devtmpfs, a tmpfs on /tmp, cgroup2 on
#          /sys/fs/cgroup (nothing enabled in its subtree_control) and lo up
# FILE     copied to the guest's /bin (ELF binaries with their shared
#          libraries, stripped)
#
# Standard output: the lines the script printed (the guest's console between
# the begin and end markers, \r stripped). Exit status: the script's. A boot
# that does not reach the end marker within PIDWARDEN_VM_TIMEOUT seconds
# (default 300), or that oopses, is retried once (a software-emulated boot now
# and then hangs or oopses early); after two such boots the status is 125 and
# the console's last lines go to standard error.
#
# Environment: PIDWARDEN_VM_CACHE (default /var/cache/pidwarden-vm),
# PIDWARDEN_VM_TIMEOUT, PIDWARDEN_VM_MEM (MiB, default 1024),
# PIDWARDEN_VM_SMP (default 2), PIDWARDEN_VM_APPEND (extra kernel arguments).
#
# Nothing is left behind: QEMU is stopped and the work directory removed on
# every exit, interrupted or not.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PIDWARDEN_VM_CACHE:-/var/cache/pidwarden-vm}
TIMEOUT=${PIDWARDEN_VM_TIMEOUT:-300}
kernel=$1 script=$2
shift 2

case $kernel in
*/*) vmlinuz=$kernel ;;
*)
    vmlinuz=$CACHE/vmlinuz-$kernel
    [ -s "$vmlinuz" ] || "$here/kernels.sh" "$CACHE" >&2
    ;;
esac
[ -s "$vmlinuz" ] || { echo "error: no kernel at $vmlinuz" >&2; exit 2; }
[ -f "$script" ] || { echo "error: no script $script" >&2; exit 2; }
for t in qemu-system-x86_64 cpio gzip; do
    command -v "$t" >/dev/null || { echo "error: $t not found (apt-get install qemu-system-x86 cpio)" >&2; exit 2; }
done
BUSYBOX=${PIDWARDEN_VM_BUSYBOX:-/bin/busybox}
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "error: $BUSYBOX is not static (apt-get install busybox-static)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pidwarden-vm.XXXXXX")
qpid=
cleanup() {
    if [ -n "$qpid" ]; then
        kill "$qpid" 2>/dev/null || true
        [ -s "$work/qemu.pid" ] && kill -9 "$(cat "$work/qemu.pid")" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- the initramfs ------------------------------------------------------------
ir=$work/root
mkdir -p "$ir"/{bin,proc,sys,dev,tmp,etc,lib64,lib/x86_64-linux-gnu}
cp "$BUSYBOX" "$ir/bin/busybox"
for f in "$@"; do
    [ -f "$f" ] || { echo "error: no file $f" >&2; exit 2; }
    dest=$ir/bin/$(basename "$f")
    cp "$f" "$dest"
    if file -b "$f" 2>/dev/null | grep -q ELF || head -c 4 "$f" | grep -q ELF; then
        strip "$dest" 2>/dev/null || true
        for l in $(ldd "$f" 2>/dev/null | awk '/=> \//{print $3}'); do
            cp -n "$l" "$ir/lib/x86_64-linux-gnu/"
        done
    fi
done
cp -L /lib64/ld-linux-x86-64.so.2 "$ir/lib64/"
cp "$script" "$ir/test.sh"
echo 'root:x:0:0:root:/:/bin/sh' >"$ir/etc/passwd"
cat >"$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "@@PIDWARDEN-BEGIN $(uname -r)"
cd / && sh /test.sh
echo "@@PIDWARDEN-END rc=$?"
sync
poweroff -f
INIT
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# --- the boots ----------------------------------------------------------------
boot() {
    local log=$1
    rm -f "$work/qemu.pid"
    timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -m "${PIDWARDEN_VM_MEM:-1024}" -smp "${PIDWARDEN_VM_SMP:-2}" \
        -nodefaults -display none -no-reboot -serial "file:$log" -pidfile "$work/qemu.pid" \
        -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 panic=-1 oops=panic loglevel=3 ${PIDWARDEN_VM_APPEND:-}" \
        </dev/null >"$work/qemu.out" 2>&1 &
    qpid=$!
    wait "$qpid" || true
    qpid=
}

for try in 1 2; do
    log=$work/console.$try
    t0=$SECONDS
    boot "$log"
    tr -d '\r' <"$log" >"$log.txt" 2>/dev/null || true
    if grep -q '^@@PIDWARDEN-END rc=' "$log.txt"; then
        echo "vm: $(basename "$vmlinuz") booted and ran $(basename "$script") in $((SECONDS - t0))s (try $try)" >&2
        sed -n '/^@@PIDWARDEN-BEGIN/,/^@@PIDWARDEN-END/p' "$log.txt" | sed '1d;$d'
        rc=$(sed -n 's/^@@PIDWARDEN-END rc=\([0-9]*\).*/\1/p' "$log.txt" | tail -n 1)
        exit "${rc:-125}"
    fi
    echo "vm: try $try on $(basename "$vmlinuz") did not finish in $((SECONDS - t0))s (timeout ${TIMEOUT}s); console tail:" >&2
    tail -n 20 "$log.txt" >&2 || true
    cat "$work/qemu.out" >&2 || true
done
exit 125
