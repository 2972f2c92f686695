#!/usr/bin/env bash
# Fetches the cgroup v2 kernels the VM tests boot: Debian's 6.1 (bookworm) and
# 6.12 (bookworm-backports), and keeps their vmlinuz in a cache directory.
#
#   scripts/vm/kernels.sh [CACHE]      # CACHE default: $PIDWARDEN_VM_CACHE,
#                                      # else /var/cache/pidwarden-vm
#   -> CACHE/vmlinuz-6.1  CACHE/vmlinuz-6.12  CACHE/kernels.txt (package versions)
#
# Nothing is installed on the host and the host's apt state is not touched:
# the package lists are read through a private apt configuration under CACHE
# and the two packages are only downloaded and unpacked. A second run with the
# kernels in the cache does nothing (no network). Concurrent runs wait for
# each other (flock on CACHE/lock).
set -euo pipefail

C=${1:-${PIDWARDEN_VM_CACHE:-/var/cache/pidwarden-vm}}
mkdir -p "$C"
exec 8>"$C/lock"
flock -w 900 8 || { echo "error: $C/lock held for 15 minutes" >&2; exit 1; }

if [ -s "$C/vmlinuz-6.1" ] && [ -s "$C/vmlinuz-6.12" ]; then
    echo "kernels cached in $C: $(tr '\n' ' ' <"$C/kernels.txt" 2>/dev/null)"
    exit 0
fi
for t in apt-get apt-cache dpkg-deb; do
    command -v "$t" >/dev/null || { echo "error: $t not found (a Debian host is needed)" >&2; exit 1; }
done
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || { echo "error: $KEYRING missing (install debian-archive-keyring)" >&2; exit 1; }
MIRROR=${PIDWARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}

work=$(mktemp -d "$C/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# fetch SUITE NAME: downloads the kernel linux-image-amd64 depends on in SUITE
# and copies its vmlinuz to CACHE/vmlinuz-NAME.
fetch() {
    local suite=$1 name=$2 d="$work/$2"
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/pkg" "$d/none"
    echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >"$d/sources.list"
    local -a o=(-o "Dir::Etc::sourcelist=$d/sources.list" -o "Dir::Etc::sourceparts=$d/none"
        -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o "Dir::Etc::preferencesparts=$d/none"
        -o "APT::Sandbox::User=root")
    apt-get "${o[@]}" -qq update
    local pkg
    pkg=$(apt-cache "${o[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$pkg" ] || { echo "error: no kernel package behind linux-image-amd64 in $suite" >&2; return 1; }
    (cd "$d/pkg" && apt-get "${o[@]}" -qq download "$pkg")
    dpkg-deb -x "$d"/pkg/*.deb "$d/x"
    local v
    v=$(ls "$d"/x/boot/vmlinuz-* | head -n 1)
    [ -s "$v" ] || { echo "error: no vmlinuz in $pkg" >&2; return 1; }
    cp "$v" "$C/vmlinuz-$name.new"
    mv "$C/vmlinuz-$name.new" "$C/vmlinuz-$name"
    echo "$name $pkg $(basename "$v")" >>"$work/kernels.txt"
    rm -rf "$d"
}

fetch bookworm 6.1
fetch bookworm-backports 6.12
mv "$work/kernels.txt" "$C/kernels.txt"
echo "kernels fetched into $C: $(tr '\n' ' ' <"$C/kernels.txt")"
