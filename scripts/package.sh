#!/usr/bin/env bash
# Builds the Debian package of both daemons:
#
#   scripts/package.sh        ->  target/debian/pidwarden_<version>_amd64.deb
#
# Installs cargo-deb (crates.io) when it is missing, builds the release
# binaries (static, as for the image), then packs them with the units, the example config
# and the maintainer scripts in deploy/ (see [package.metadata.deb] in
# remediator/Cargo.toml). Prints the package's path on its last line.
# Environment: CARGO_TARGET_DIR is honoured; CARGO_DEB_VERSION pins cargo-deb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
command -v protoc >/dev/null || { echo "error: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "error: dpkg-deb not found" >&2; exit 1; }

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb ${CARGO_DEB_VERSION:-3.8.0}"
    cargo install --locked --quiet cargo-deb --version "${CARGO_DEB_VERSION:-3.8.0}" \
        --no-default-features
fi

# The same static build as deploy/build-image.sh: one release build serves
# the package, the image and the VM tests.
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$triple" -p pidwarden-exporter -p pidwarden-remediator
target=${CARGO_TARGET_DIR:-target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out="$target/debian/pidwarden_${version}_amd64.deb"
rm -f "$out"
cargo deb --no-build --strip --target "$triple" -p pidwarden-remediator --output "$out" >&2
dpkg-deb --info "$out" >/dev/null
echo "$out"
