#!/usr/bin/env bash
# A Debian 12 host with systemd as PID 1, cgroup v2 only, and Docker (systemd
# cgroup driver), booted under QEMU (software emulation).
#
#   scripts/vm/systemd-host.sh build             # the disk image, cached
#   scripts/vm/systemd-host.sh run SCRIPT [FILE...]
#
# build: debootstraps bookworm (systemd, udev, busybox, docker.io and
#   Debian's kernel) and makes CACHE/systemd-host/disk.img (ext4, 4 GB
#   sparse) with vmlinuz and initrd beside it; nothing when they exist.
# run: boots the image with a second disk holding SCRIPT (as test.sh) and
#   the FILEs, mounted at /root/in; a oneshot unit runs
#   `bash /root/in/test.sh` after docker.service, its output on the serial
#   console between markers, then powers off. The image is opened with
#   -snapshot: a boot never changes it. Standard output: what the script
#   printed; exit status: the script's (125 when two boots, each bounded by
#   PIDWARDEN_VM_HOST_TIMEOUT seconds, default 600, did not finish).
#
# Environment: PIDWARDEN_VM_CACHE (default /var/cache/pidwarden-vm),
# PIDWARDEN_VM_SMP (default 2). QEMU and the work directory are removed on
# every exit; no loop mount is used (the disks are made with mkfs.ext4 -d).
set -euo pipefail

CACHE=${PIDWARDEN_VM_CACHE:-/var/cache/pidwarden-vm}
H=$CACHE/systemd-host
TIMEOUT=${PIDWARDEN_VM_HOST_TIMEOUT:-600}
MIRROR=${PIDWARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# adduser for the package's maintainer scripts, procps for `docker top`.
PACKAGES=systemd-sysv,udev,kmod,iproute2,procps,adduser,busybox,ca-certificates,linux-image-amd64,docker.io
# A cached image is reused while it was built from this list.
KEY="bookworm minbase $PACKAGES"

need() {
    command -v "$1" >/dev/null || { echo "error: $1 not found (apt-get install $2)" >&2; exit 2; }
}

build() {
    need debootstrap debootstrap
    need mkfs.ext4 e2fsprogs
    mkdir -p "$H"
    exec 8>"$H/lock"
    flock -w 1800 8 || { echo "error: $H/lock held for 30 minutes" >&2; exit 1; }
    if [ -s "$H/disk.img" ] && [ -s "$H/vmlinuz" ] && [ -s "$H/initrd" ] &&
        [ "$(cat "$H/key" 2>/dev/null)" = "$KEY" ]; then
        echo "systemd host image cached in $H"
        return 0
    fi
    work=
    work=$(mktemp -d "$H/build.XXXXXX")
    # debootstrap mounts proc and sysfs in the tree while it works: unmount
    # whatever an interrupted build left there before removing it, and never
    # remove across a mount.
    trap 'awk -v w="$work/" "index(\$2, w) == 1 {print \$2}" /proc/mounts | sort -r | xargs -r -n 1 umount -l;
          rm -rf --one-file-system "$work"' EXIT
    local R=$work/rootfs
    debootstrap --variant=minbase \
        --include="$PACKAGES" \
        bookworm "$R" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
        { tail -n 30 "$work/debootstrap.log" >&2; return 1; }
    echo pwhost >"$R/etc/hostname"
    printf '/dev/vda / ext4 defaults 0 1\n' >"$R/etc/fstab"
    cat >"$R/etc/systemd/system/pidwarden-test.service" <<'UNIT'
[Unit]
Description=pidwarden VM test script
After=docker.service
Wants=docker.service

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/bash -c 'mkdir -p /root/in && mount -o ro /dev/vdb /root/in; echo "@@PIDWARDEN-BEGIN $(uname -r) $(stat -fc %%T /sys/fs/cgroup)"; bash /root/in/test.sh; echo "@@PIDWARDEN-END rc=$?"'
ExecStartPost=/bin/systemctl --no-block poweroff
UNIT
    ln -sf /etc/systemd/system/pidwarden-test.service \
        "$R/etc/systemd/system/multi-user.target.wants/pidwarden-test.service"
    # No getty on the console the test writes to.
    ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
    cp "$R"/boot/vmlinuz-* "$work/vmlinuz"
    cp "$R"/boot/initrd.img-* "$work/initrd"
    truncate -s 4G "$work/disk.img"
    mkfs.ext4 -q -F -d "$R" "$work/disk.img"
    mv "$work/vmlinuz" "$work/initrd" "$work/disk.img" "$H/"
    echo "$KEY" >"$H/key"
    echo "built $H/disk.img"
}

run() {
    local script=$1
    shift
    [ -s "$H/disk.img" ] || build >&2
    need qemu-system-x86_64 qemu-system-x86
    work= qpid=
    work=$(mktemp -d "${TMPDIR:-/tmp}/pidwarden-vmhost.XXXXXX")
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
    mkdir -p "$work/in"
    cp "$script" "$work/in/test.sh"
    local f
    for f in "$@"; do cp "$f" "$work/in/"; done
    truncate -s 256M "$work/in.img"
    mkfs.ext4 -q -F -d "$work/in" "$work/in.img"
    local try t0 log
    for try in 1 2; do
        log=$work/console.$try
        t0=$SECONDS
        rm -f "$work/qemu.pid"
        # apparmor=0: Debian's kernel enables AppArmor and docker.io then
        # wants apparmor_parser.
        timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
            -accel tcg,thread=multi -cpu max -m 2048 -smp "${PIDWARDEN_VM_SMP:-2}" \
            -nodefaults -display none -no-reboot -serial "file:$log" -pidfile "$work/qemu.pid" \
            -kernel "$H/vmlinuz" -initrd "$H/initrd" -snapshot \
            -drive "file=$H/disk.img,format=raw,if=virtio" \
            -drive "file=$work/in.img,format=raw,if=virtio" \
            -append "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=3 apparmor=0 systemd.show_status=0" \
            </dev/null >"$work/qemu.out" 2>&1 &
        qpid=$!
        wait "$qpid" || true
        qpid=
        # The markers may follow other console output on their line; the
        # end marker is a whole line (the unit's command line, which a
        # process listing may print, holds its text too).
        tr -d '\r' <"$log" | sed -E 's/^.*(@@PIDWARDEN-(BEGIN .*|END rc=[0-9]+)$)/\1/' >"$log.txt" 2>/dev/null || true
        if grep -Eq '^@@PIDWARDEN-END rc=[0-9]+$' "$log.txt"; then
            echo "vm: systemd host ran $(basename "$script") in $((SECONDS - t0))s (try $try)" >&2
            sed -En '/^@@PIDWARDEN-BEGIN/,/^@@PIDWARDEN-END rc=[0-9]+$/p' "$log.txt" | sed '$d'
            local rc
            rc=$(sed -En 's/^@@PIDWARDEN-END rc=([0-9]+)$/\1/p' "$log.txt" | tail -n 1)
            exit "${rc:-125}"
        fi
        echo "vm: try $try of the systemd host did not finish in $((SECONDS - t0))s; console tail:" >&2
        tail -n 30 "$log.txt" >&2 || true
    done
    exit 125
}

case ${1:-} in
build) build ;;
run)
    [ $# -ge 2 ] || { echo "usage: $0 run SCRIPT [FILE...]" >&2; exit 2; }
    shift
    run "$@"
    ;;
*)
    echo "usage: $0 build | run SCRIPT [FILE...]" >&2
    exit 2
    ;;
esac
