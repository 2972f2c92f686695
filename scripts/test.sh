#!/usr/bin/env bash
# The pidwarden test suite: one command, from a fresh Debian (bookworm-based)
# machine to a verdict.
#
#   scripts/test.sh
#
# 1. installs the Debian packages the tests use when any is missing
#    (docker.io busybox-static prometheus prometheus-alertmanager
#    prometheus-process-exporter wrk; containerd for the private CRI node,
#    podman, protobuf-compiler for the CRI bindings, docker-compose,
#    qemu-system-x86 cpio debootstrap e2fsprogs for the VMs, python3 for
#    scripts/mkimage.py, and python3-yaml python3-jsonschema for the
#    Kubernetes manifest checks) — needs root (or sudo) — and, with pip,
#    the Python modules python3 still cannot import (kubernetes-validate);
# 2. starts dockerd (--bridge=none --iptables=false --ip6tables=false) when
#    `docker info` fails, and leaves it running;
# 3. removes leftovers of earlier runs (containers and empty cgroups named
#    pidwarden-test-*, private containerd/podman services the kit started
#    under $TMP/pidwarden-test-*) before and after the run;
# 4. builds the local image pidwarden-test-busybox:latest when missing;
# 5. runs cargo fmt --check, clippy -D warnings, build, test for the whole
#    workspace, then promtool/amtool checks of alerts/, the grafana/
#    dashboard checks and the deploy/kubernetes/ manifest checks (kubectl
#    kustomize, kubernetes-validate, CRD schemas, promtool, PrometheusRule
#    drift; kubectl is not a Debian package: install it beforehand) when
#    those files exist;
# 6. builds both daemons once, statically linked (the kernel tests, the
#    package and the image use that build);
# 7. "cgroup v2 kernels": fetches Debian's 6.1 and 6.12 kernels into
#    $PIDWARDEN_VM_CACHE (default /var/cache/pidwarden-vm;
#    scripts/vm/kernels.sh, cached) and runs tests/tests/cgroup_v2_kernels.rs,
#    which boots each under QEMU. `cargo test` skips those tests
#    (PIDWARDEN_SKIP_VM=1) so that they run once, here;
# 8. "image as docker-compose.yml runs it": tests/compose/test.sh;
#    "README quick start": tests/quickstart/test.sh runs README's marked
#    quick-start blocks, in order and unmodified, in a fresh git clone of
#    this checkout (the daemons, a container, an alert answered in dry-run,
#    README's clean-up);
# 9. "systemd + Docker host": a Debian 12 disk image with systemd and
#    docker.io, built by debootstrap in the background from the start of the
#    run (scripts/vm/systemd-host.sh, cached under the same directory), then
#    tests/tests/systemd_docker_host.rs and the package's install, upgrade and
#    purge on it (scripts/package.sh, tests/vm/package-host/test.sh);
# 10. "fuzz": each cargo-fuzz target for PIDWARDEN_FUZZ_SECONDS (20 s).
# The static build (6) and then the fuzz targets' build run in the
# background at the lowest priority from the end of `cargo build` on.
#
# Every step runs even when an earlier check failed; the exit status is
# non-zero when any step failed. The last line is the summary:
#   pidwarden tests: N passed, M failed
#
# Environment: PIDWARDEN_LOG_DIR (default /tmp/pidwarden-test-logs) keeps the
# dockerd and cargo test logs; PIDWARDEN_TEST_TIMEOUT (seconds, default 1200)
# bounds `cargo test`; PIDWARDEN_QUICKSTART_TIMEOUT (seconds, default 900)
# bounds the README quick start; PIDWARDEN_SKIP_INSTALL=1 skips the package
# step.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)

LOG_DIR=${PIDWARDEN_LOG_DIR:-/tmp/pidwarden-test-logs}
mkdir -p "$LOG_DIR"
TMP=${TMPDIR:-/tmp}
IMAGE=pidwarden-test-busybox:latest
PACKAGES=(docker.io busybox-static prometheus prometheus-alertmanager prometheus-process-exporter wrk
    containerd podman protobuf-compiler python3 docker-compose qemu-system-x86 cpio debootstrap e2fsprogs)

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi

passed=0
failed=0
failed_steps=()

say() { printf '\n==> %s\n' "$*"; }

# step NAME COMMAND...: runs one step, records its result, never exits.
step() {
    local name=$1
    shift
    say "$name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        printf -- '--- ok: %s (%ss)\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1))
        failed_steps+=("$name")
        printf -- '--- FAILED: %s (%ss)\n' "$name" $((SECONDS - t0))
    fi
}

# A step that must succeed for the rest to make sense.
fatal() {
    echo "error: $*" >&2
    echo "pidwarden tests: $passed passed, $((failed + 1)) failed"
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# --- 1. packages ------------------------------------------------------------

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_packages() {
    install_debian_packages && install_python_modules
}

install_debian_packages() {
    local missing=() wanted=("${PACKAGES[@]}")
    # The dashboard checks and query lister under grafana/ are python3 scripts.
    ls grafana/*.py >/dev/null 2>&1 && wanted+=(python3)
    # The Kubernetes manifest checks read YAML and check JSON schemas.
    [ -d deploy/kubernetes/test ] && wanted+=(python3 python3-yaml python3-jsonschema)
    for p in "${wanted[@]}"; do
        installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all present: ${wanted[*]}"
        return 0
    fi
    echo "installing: ${missing[*]}"
    # Keep the packages' own services (prometheus, alertmanager, …) from being
    # started by their install scripts: the tests start what they need.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && added_policy=1
    fi
    local rc=0
    as_root apt-get update || rc=$?
    if [ $rc -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" || rc=$?
    fi
    [ $added_policy -eq 1 ] && as_root rm -f "$policy"
    return $rc
}

# Modules the python3 on PATH cannot import (it may not be Debian's), from
# PyPI. kubernetes-validate carries the Kubernetes JSON schemas; it is not
# packaged by Debian.
install_python_modules() {
    [ -d deploy/kubernetes/test ] || return 0
    local missing=() pair
    for pair in yaml:PyYAML jsonschema:jsonschema kubernetes_validate:kubernetes-validate; do
        python3 -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "python modules present: yaml jsonschema kubernetes_validate"
        return 0
    fi
    echo "pip installing: ${missing[*]}"
    python3 -m pip install --quiet --break-system-packages "${missing[@]}"
}

ensure_toolchain() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found (install a Rust toolchain)" >&2
        return 1
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy
    fi
    cargo --version && cargo fmt --version && cargo clippy --version
}

# --- 2. dockerd -------------------------------------------------------------

start_docker() {
    if timeout 30 docker info >/dev/null 2>&1; then
        echo "dockerd already answering: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 || { echo "error: dockerd not installed" >&2; return 1; }
    local log="$LOG_DIR/dockerd.log"
    echo "starting dockerd (log: $log)"
    as_root setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >>"$log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 60); do
        if timeout 30 docker info >/dev/null 2>&1; then
            echo "dockerd up after ${i}s: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
            return 0
        fi
        sleep 1
    done
    echo "error: dockerd did not answer within 60s; last log lines:" >&2
    tail -n 30 "$log" >&2
    return 1
}

# --- 3. leftovers -----------------------------------------------------------

# The test kit names resources pidwarden-test-<pid>-<n>-<salt>: one whose
# creating test process is still alive belongs to a run in progress and is left
# alone. Other pidwarden-test-* names (benchmarks, manual runs) are taken as
# leftovers only when stopped or older than an hour.
kit_owner() {
    sed -n 's/.*pidwarden-test-\([0-9][0-9]*\)-[0-9][0-9]*-[0-9a-f]*$/\1/p' <<<"$1"
}

in_use() {
    local name=$1 running=$2 created=$3 pid
    pid=$(kit_owner "$name")
    if [ -n "$pid" ]; then
        [ -d "/proc/$pid" ]
    else
        [ "$running" = true ] && [ $(($(date +%s) - created)) -lt 3600 ]
    fi
}

cleanup_leftovers() {
    local n_ct=0 n_cg=0 n_img=0 kept=0
    if timeout 30 docker info >/dev/null 2>&1; then
        local id name running created ref
        while read -r id; do
            [ -n "$id" ] || continue
            read -r name running created < <(docker inspect --format \
                '{{.Name}} {{.State.Running}} {{.Created}}' "$id" 2>/dev/null) || continue
            created=$(date -d "$created" +%s 2>/dev/null || echo 0)
            if in_use "${name#/}" "$running" "$created"; then
                kept=$((kept + 1))
                continue
            fi
            docker rm -f -v "$id" >/dev/null 2>&1 && n_ct=$((n_ct + 1))
        done < <(docker ps -aq --filter name=pidwarden-test- 2>/dev/null)
        while read -r ref; do
            [ -n "$ref" ] || continue
            [ "$ref" = "$IMAGE" ] && continue
            [ -n "$(kit_owner "$ref")" ] || continue
            in_use "$ref" false 0 && continue
            docker rmi -f "$ref" >/dev/null 2>&1 && n_img=$((n_img + 1))
        done < <(docker images --format '{{.Repository}}:{{.Tag}}' pidwarden-test-busybox 2>/dev/null)
    fi
    local d sub
    for d in /sys/fs/cgroup/*/pidwarden-test-* /sys/fs/cgroup/pidwarden-test-*; do
        [ -d "$d" ] && [ ! -L "$d" ] || continue
        if in_use "$(basename "$d")" true "$(stat -c %Y "$d")"; then
            kept=$((kept + 1))
            continue
        fi
        # Deepest first; rmdir refuses cgroups that still hold processes.
        while read -r sub; do
            rmdir "$sub" 2>/dev/null
        done < <(find "$d" -depth -type d 2>/dev/null)
        if [ -d "$d" ]; then
            echo "warning: $d still holds processes: $(tr '\n' ' ' <"$d/cgroup.procs" 2>/dev/null)" >&2
        else
            n_cg=$((n_cg + 1))
        fi
    done
    # Private runtimes (scripts/cri-node.sh, scripts/podman-service.sh) of
    # test processes that are gone: their pods, containers, mounts, services.
    local n_rt=0 script
    for d in "$TMP"/pidwarden-test-*/; do
        d=${d%/}
        if [ -f "$d/cri-node" ]; then
            script=scripts/cri-node.sh
        elif [ -f "$d/podman-service" ]; then
            script=scripts/podman-service.sh
        else
            continue
        fi
        if in_use "$(basename "$d")" true "$(stat -c %Y "$d")"; then
            kept=$((kept + 1))
            continue
        fi
        "$script" down "$d" >/dev/null 2>&1 && rm -rf "$d" && n_rt=$((n_rt + 1))
    done
    echo "removed leftovers: $n_ct containers, $n_cg cgroups, $n_img images, $n_rt private runtimes ($kept in use by running tests, kept)"
}

# --- 4. image ---------------------------------------------------------------

# Same recipe as the test kit (tests/src/docker.rs), under the same lock.
build_image() {
    exec 9>"$TMP/pidwarden-test-image.lock"
    flock 9
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "$IMAGE present"
        exec 9>&-
        return 0
    fi
    local ctx rc=0
    ctx=$(mktemp -d "$TMP/pidwarden-test-image.XXXXXX")
    mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/root"
    chmod 1777 "$ctx/rootfs/tmp"
    cp /bin/busybox "$ctx/rootfs/bin/busybox"
    local a
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$ctx/rootfs/bin/$a"
    done
    printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' || true
    docker image inspect "$IMAGE" >/dev/null 2>&1 || rc=1
    rm -rf "$ctx"
    exec 9>&-
    return $rc
}

# --- 5. checks --------------------------------------------------------------

cargo_test() {
    local log="$LOG_DIR/cargo-test.log" rc
    # The VM tests run in their own step, against a release build.
    PIDWARDEN_SKIP_VM=1 timeout --kill-after=30 "${PIDWARDEN_TEST_TIMEOUT:-1200}" \
        cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 124 ] && echo "error: cargo test timed out after ${PIDWARDEN_TEST_TIMEOUT:-1200}s" >&2
    echo
    echo "cargo test summaries (full log: $log):"
    awk '
        /^ *Running / {
            file = ($2 == "unittests") ? $3 : $2
            crate = $NF; gsub(/[()]/, "", crate); sub(/.*\//, "", crate); sub(/-[0-9a-f]+$/, "", crate)
            bin = crate " " file
        }
        /^ *Doc-tests / { bin = "doc-tests " $2 }
        /^test result:/ {
            printf "  %-60s %s\n", bin, $0
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed/) p += $i
                if ($(i+1) ~ /^failed/) f += $i
            }
        }
        /^---- .* stdout ----$/ { failing[++nf] = $2 }
        END {
            printf "cargo test: %d passed, %d failed\n", p, f
            for (i = 1; i <= nf; i++) printf "  failed: %s\n", failing[i]
        }' "$log"
    return "$rc"
}

rule_files() {
    local f
    for f in alerts/*.yml alerts/*.yaml; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in alertmanager*) continue ;; esac
        echo "$f"
    done
}

alert_checks() {
    local -a rules tests
    mapfile -t rules < <(rule_files)
    mapfile -t tests < <(ls alerts/tests/*.yml alerts/tests/*.yaml 2>/dev/null)
    if [ ${#rules[@]} -gt 0 ]; then
        step "promtool check rules" promtool check rules "${rules[@]}"
    else
        echo "no rule files under alerts/: promtool check rules not run"
    fi
    if [ ${#tests[@]} -gt 0 ]; then
        # Rule tests name their rule files relative to the test file's folder.
        step "promtool test rules" promtool test rules "${tests[@]}"
    else
        echo "no rule tests under alerts/tests/: promtool test rules not run"
    fi
    if [ -f alerts/alertmanager.yml ]; then
        step "amtool check-config" amtool check-config alerts/alertmanager.yml
    else
        echo "no alerts/alertmanager.yml: amtool check-config not run"
    fi
}

# --- 6. real cgroup v2 hosts under QEMU, the package and the image ----------

VM_CACHE=${PIDWARDEN_VM_CACHE:-/var/cache/pidwarden-vm}
STATIC_TARGET=x86_64-unknown-linux-gnu
STATIC_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$STATIC_TARGET/release

# One static release build of both daemons serves the kernel tests, the
# package and the image (scripts/package.sh and deploy/build-image.sh build
# the same and find it done).
# The static release build, then the fuzz targets' instrumented build (and
# cargo-fuzz's installation), run in the background at the lowest priority
# from the end of `cargo build` on: they take the CPU that `cargo test`
# (mostly waiting on containers) and the emulator leave idle, and the steps
# that need them wait for them (bounded). Each writes its exit status next
# to its log.
BG_BUILD_PID=
start_background_builds() {
    rm -f "$LOG_DIR/static-build.rc" "$LOG_DIR/fuzz-build.rc"
    # Its own process group, so that an early exit ends its cargo too.
    setsid bash -c '
        renice -n 19 -p $$ >/dev/null
        log=$1
        shift
        "$@" >"$log/static-build.log" 2>&1
        echo $? >"$log/static-build.rc"
        CARGO_BUILD_JOBS=2 scripts/fuzz.sh --build-only >"$log/fuzz-build.log" 2>&1
        echo $? >"$log/fuzz-build.rc"
    ' _ "$LOG_DIR" env RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
        --target "$STATIC_TARGET" -p pidwarden-exporter -p pidwarden-remediator &
    BG_BUILD_PID=$!
}
# wait_background NAME: waits (at most 45 min) for NAME's status, shows the
# end of its log, and returns its status.
wait_background() {
    local rc_file="$LOG_DIR/$1.rc" deadline=$((SECONDS + 2700)) rc
    while [ ! -s "$rc_file" ]; do
        if [ -z "$BG_BUILD_PID" ] || ! kill -0 "$BG_BUILD_PID" 2>/dev/null; then
            [ -s "$rc_file" ] && break
            echo "error: the background build ended without $1's status" >&2
            tail -n 20 "$LOG_DIR/$1.log" 2>/dev/null
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "error: $1 still running after 45 min" >&2
            return 1
        fi
        sleep 2
    done
    rc=$(cat "$rc_file")
    tail -n 20 "$LOG_DIR/$1.log"
    return "$rc"
}

# The Debian 12 systemd + Docker image (debootstrap, mostly downloads) is
# built in the background while the cargo steps run; the steps that boot it
# wait for it.
HOST_BUILD_PID=
start_host_build() {
    PIDWARDEN_VM_CACHE=$VM_CACHE scripts/vm/systemd-host.sh build >"$LOG_DIR/vm-host-build.log" 2>&1 &
    HOST_BUILD_PID=$!
}
wait_host_build() {
    local rc=0
    if [ -n "$HOST_BUILD_PID" ]; then
        wait "$HOST_BUILD_PID" || rc=$?
        HOST_BUILD_PID=
        cat "$LOG_DIR/vm-host-build.log"
        [ $rc -eq 0 ] || return $rc
    fi
    PIDWARDEN_VM_CACHE=$VM_CACHE scripts/vm/systemd-host.sh build
}

# The exporter on Debian's 6.1 and 6.12 under QEMU (scripts/vm/): one boot per
# kernel, each bounded and retried once by scripts/vm/initramfs.sh.
fuzz_step() {
    wait_background fuzz-build || return $?
    FUZZ_SECONDS="${PIDWARDEN_FUZZ_SECONDS:-20}" scripts/fuzz.sh
}

vm_kernel_tests() {
    local log="$LOG_DIR/cgroup-v2-kernels.log"
    cargo build -p pidwarden-tests --bin pidwarden-vm-helper &&
        scripts/vm/kernels.sh "$VM_CACHE" || return 1
    PIDWARDEN_VM_CACHE=$VM_CACHE PIDWARDEN_BIN_DIR="$STATIC_DIR" timeout --kill-after=30 1500 \
        cargo test -p pidwarden-tests --test cgroup_v2_kernels -- --test-threads=1 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
}

# Both daemons on a Debian 12 host with systemd and Docker (systemd cgroup
# driver), booted from the cached image.
vm_systemd_host_test() {
    local log="$LOG_DIR/systemd-docker-host.log"
    wait_host_build || return 1
    PIDWARDEN_VM_CACHE=$VM_CACHE timeout --kill-after=30 1500 \
        cargo test -p pidwarden-tests --test systemd_docker_host 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
}

# Builds the .deb and runs tests/vm/package-host/test.sh on the same host:
# install, enable, metrics, a dry-run alert, the switch to live, a kill, a
# restart and an upgrade keeping the audit trail, purge.
package_host_test() {
    local deb
    deb=$(scripts/package.sh | tail -n 1) || return 1
    echo "package: $deb ($(du -h "$deb" | cut -f1))"
    wait_host_build || return 1
    PIDWARDEN_VM_CACHE=$VM_CACHE scripts/vm/systemd-host.sh run \
        tests/vm/package-host/test.sh "$deb" /bin/busybox
}

# --- run --------------------------------------------------------------------

echo "pidwarden test suite in $ROOT ($(date -u +%FT%TZ), $(nproc) cores)"

if [ "${PIDWARDEN_SKIP_INSTALL:-0}" != 1 ]; then
    step "packages" install_packages
    [ $failed -eq 0 ] || fatal "package installation failed"
fi
step "rust toolchain" ensure_toolchain
[ $failed -eq 0 ] || fatal "no usable Rust toolchain"
step "dockerd" start_docker
[ $failed -eq 0 ] || fatal "Docker is not reachable (log: $LOG_DIR/dockerd.log)"

finish() {
    local rc=$?
    trap - EXIT
    if [ -n "$HOST_BUILD_PID" ]; then
        kill "$HOST_BUILD_PID" 2>/dev/null
        wait "$HOST_BUILD_PID" 2>/dev/null
    fi
    if [ -n "$BG_BUILD_PID" ]; then
        kill -- "-$BG_BUILD_PID" 2>/dev/null
        wait "$BG_BUILD_PID" 2>/dev/null
    fi
    step "remove leftovers (after)" cleanup_leftovers
    echo
    if [ $failed -gt 0 ]; then
        printf 'failed steps:'
        printf ' [%s]' "${failed_steps[@]}"
        echo
    fi
    echo "pidwarden tests: $passed passed, $failed failed"
    [ $failed -gt 0 ] && [ $rc -eq 0 ] && rc=1
    exit $rc
}
trap finish EXIT
trap 'exit 130' INT TERM

step "remove leftovers" cleanup_leftovers
start_host_build
step "test image" build_image
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo build" cargo build --workspace --all-targets
start_background_builds
step "cargo test" cargo_test
alert_checks
if [ -f grafana/test_dashboards.py ]; then
    step "grafana dashboard checks" python3 -m unittest grafana/test_dashboards.py
fi
if [ -f deploy/kubernetes/test/test_manifests.py ]; then
    step "kubernetes manifest checks" python3 -m unittest deploy/kubernetes/test/test_manifests.py
fi
step "release build (static)" wait_background static-build
step "cgroup v2 kernels" vm_kernel_tests
step "image as docker-compose.yml runs it" tests/compose/test.sh
step "README quick start" tests/quickstart/test.sh
step "systemd + Docker host" vm_systemd_host_test
step "package on a systemd + Docker host (VM)" package_host_test
# The cargo-fuzz targets (fuzz/), each for a bounded time; a crash fails the
# step and keeps its input in fuzz/artifacts/.
step "fuzz" fuzz_step
exit 0
