#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh [TARGET...]      # all targets when none is given
#   scripts/fuzz.sh --build-only     # install cargo-fuzz, build, run nothing
#
# FUZZ_SECONDS     time per target (default 60)
# FUZZ_TARGET_DIR  where the instrumented build goes (default fuzz/target;
#                  kept apart from the workspace's target: other RUSTFLAGS)
#
# cargo-fuzz is installed from crates.io when missing. It needs a nightly
# compiler: the `nightly` toolchain when rustup has one, else the stable
# toolchain with RUSTC_BOOTSTRAP=1 (which lets it take the -Z flags).
# The committed seeds in fuzz/corpus/<target>/ are read, never written:
# what a run discovers goes to a scratch directory that is removed after.
# A crash stops the script with a non-zero status; its input is kept in
# fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <file>).
set -euo pipefail

cd "$(dirname "$0")/.."
build_only=0
if [ "${1:-}" = --build-only ]; then
    build_only=1
    shift
fi
secs="${FUZZ_SECONDS:-60}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo "${toolchain[@]}" fuzz list)
fi

scratch="$(mktemp -d /tmp/pidwarden-fuzz.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT

echo "== building ${#targets[@]} targets"
(cd fuzz && cargo "${toolchain[@]}" fuzz build)
if [ "$build_only" = 1 ]; then
    echo "== built ${#targets[@]} targets"
    exit 0
fi

for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${secs}s"
    mkdir -p "$scratch/$t" "fuzz/corpus/$t"
    # New inputs go to the first directory (scratch); the seeds are read.
    (cd fuzz && cargo "${toolchain[@]}" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1)
done
echo "== no crash in ${#targets[@]} targets (${secs}s each)"
