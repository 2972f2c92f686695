#!/usr/bin/env bash
# A real cgroup v2 host for tests: Debian 12 with systemd as PID 1 and
# docker.io (systemd cgroup driver), booted under QEMU (software emulation).
#
#   scripts/vm/host.sh build            # debootstrap -> $CACHE/host/disk.img (kept)
#   scripts/vm/host.sh run DIR          # boots it with DIR as the guest's /root/in,
#                                       # runs DIR/test.sh, prints its output
#
# CACHE is $PIDWARDEN_VM_CACHE (default /var/cache/pidwarden-vm). The image is
# built once from Debian's packages and reused while the recipe (this file's
# BUILD_KEY) is unchanged. A run never writes to it: QEMU's -snapshot keeps
# the guest's writes in a temporary file that goes with the process, and the
# guest's input is a second small ext4 disk made with mkfs.ext4 -d, so nothing
# is loop-mounted. Output comes back on the serial console between
# @@BEGIN/@@END; the guest's last line `@@RC n` is this script's exit status.
# Each boot is bounded (PIDWARDEN_VM_TIMEOUT, default 900 s) and retried once
# when the guest never reached its test (a software-emulated boot now and then
# oopses or hangs).
set -euo pipefail

CACHE=${PIDWARDEN_VM_CACHE:-/var/cache/pidwarden-vm}
HOST=$CACHE/host
TIMEOUT=${PIDWARDEN_VM_TIMEOUT:-900}
MIRROR=${PIDWARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd-sysv,udev,kmod,iproute2,procps,busybox,ca-certificates,adduser,linux-image-amd64,docker.io
BUILD_KEY="bookworm minbase $PACKAGES v1"

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2"
}

# remove_root DIR: debootstrap mounts /proc and /sys inside the tree while it
# works; an interrupted build leaves them, so unmount before removing, and
# never cross into another file system.
remove_root() {
    local m
    for m in $(awk -v r="$1/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$1"
}

build() {
    if [ -f "$HOST/disk.img" ] && [ "$(cat "$HOST/key" 2>/dev/null)" = "$BUILD_KEY" ]; then
        echo "host image cached: $HOST/disk.img"
        return 0
    fi
    need debootstrap debootstrap
    need qemu-system-x86_64 qemu-system-x86
    need mkfs.ext4 e2fsprogs
    mkdir -p "$HOST"
    local root
    root=$(mktemp -d "$HOST/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "remove_root '$root'" EXIT
    trap 'exit 130' INT TERM
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$HOST/debootstrap.log" 2>&1 ||
        { tail -n 20 "$HOST/debootstrap.log" >&2; return 1; }
    echo pwhost >"$root/etc/hostname"
    echo '/dev/vda / ext4 defaults 0 1' >"$root/etc/fstab"
    # The test unit: mounts the input disk, runs test.sh after Docker is up,
    # writes to the serial console and powers off whatever happens.
    cat >"$root/etc/systemd/system/pidwarden-vm-test.service" <<'UNIT'
[Unit]
Description=pidwarden VM test
After=docker.service
Wants=docker.service
[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=infinity
ExecStart=/bin/bash -c 'mkdir -p /root/in && mount -o ro /dev/vdb /root/in; echo "@@BEGIN $(uname -r) $(stat -fc %%T /sys/fs/cgroup)"; cd /root/in && bash ./test.sh; echo "@@RC $?"; echo "@@END"'
ExecStopPost=/bin/systemctl --no-block poweroff
UNIT
    ln -sf /etc/systemd/system/pidwarden-vm-test.service \
        "$root/etc/systemd/system/multi-user.target.wants/pidwarden-vm-test.service"
    # No console login or network waits on the way to the test.
    rm -f "$root/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
    cp "$root"/boot/vmlinuz-* "$HOST/vmlinuz.new"
    cp "$root"/boot/initrd.img-* "$HOST/initrd.new"
    rm -f "$HOST/disk.img.new"
    truncate -s 4G "$HOST/disk.img.new"
    mkfs.ext4 -q -F -d "$root" "$HOST/disk.img.new"
    mv "$HOST/vmlinuz.new" "$HOST/vmlinuz"
    mv "$HOST/initrd.new" "$HOST/initrd"
    mv "$HOST/disk.img.new" "$HOST/disk.img"
    echo "$BUILD_KEY" >"$HOST/key"
    remove_root "$root"
    trap - EXIT
    echo "host image built: $HOST/disk.img"
}

# boot INPUT_IMG LOG: one bounded boot; the console goes to LOG. The QEMU
# process is ended with this script, whatever ends it.
QEMU_PID=
stop_qemu() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=
}
boot() {
    local input=$1 log=$2
    # apparmor=0: Debian's kernel enables AppArmor and docker.io then wants
    # apparmor_parser, which the minimal image does not have.
    timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -m 2048 -smp 2 \
        -nographic -no-reboot -snapshot \
        -kernel "$HOST/vmlinuz" -initrd "$HOST/initrd" \
        -drive "file=$HOST/disk.img,format=raw,if=virtio" \
        -drive "file=$input,format=raw,if=virtio,readonly=on" \
        -append "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=3 apparmor=0 systemd.show_status=0" \
        </dev/null >"$log.raw" 2>&1 &
    QEMU_PID=$!
    wait "$QEMU_PID" || true
    QEMU_PID=
    tr -d '\r' <"$log.raw" >"$log"
}

run() {
    local dir=$1
    [ -f "$dir/test.sh" ] || { echo "error: $dir/test.sh missing" >&2; return 2; }
    [ -f "$HOST/disk.img" ] || { echo "error: no host image; run: $0 build" >&2; return 2; }
    need qemu-system-x86_64 qemu-system-x86
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/pidwarden-vm.XXXXXX")
    # shellcheck disable=SC2064
    trap "stop_qemu; rm -rf '$work'" EXIT
    trap 'exit 130' INT TERM
    local size
    size=$(du -sm "$dir" | awk '{print $1 * 2 + 32}')
    truncate -s "${size}M" "$work/in.img"
    mkfs.ext4 -q -F -d "$dir" "$work/in.img"
    local try out
    for try in 1 2; do
        boot "$work/in.img" "$work/console.log"
        out=$(sed -n '/@@BEGIN/,/@@END/p' "$work/console.log" | sed 's/^.*@@BEGIN/@@BEGIN/')
        if grep -q '^@@RC ' <<<"$out"; then
            break
        fi
        echo "vm boot $try did not reach the test; console tail:" >&2
        tail -n 15 "$work/console.log" >&2
    done
    printf '%s\n' "$out"
    local rc
    rc=$(sed -n 's/^@@RC \([0-9]*\)$/\1/p' <<<"$out" | tail -n 1)
    rm -rf "$work"
    trap - EXIT
    [ -n "$rc" ] || { echo "error: the guest never finished its test" >&2; return 1; }
    return "$rc"
}

case ${1:-} in
build) build ;;
run) [ $# -eq 2 ] || { echo "usage: $0 run DIR" >&2; exit 2; }; run "$2" ;;
*) echo "usage: $0 build | run DIR" >&2; exit 2 ;;
esac
