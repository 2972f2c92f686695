#!/usr/bin/env bash
# Builds statically linked pidwarden binaries and packs them into a FROM scratch
# image with the local Docker daemon. No base image is pulled.
#
#   deploy/build-image.sh [TAG]      # default tag: pidwarden:<workspace version>
#
# Needs protoc (Debian protobuf-compiler): the CRI client is generated from
# the CRI api.proto at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-pidwarden:$version}
target=x86_64-unknown-linux-gnu
command -v protoc >/dev/null || { echo "error: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" -p pidwarden-exporter -p pidwarden-remediator
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for b in pidwarden-exporter pidwarden-remediator; do
  cp "target/$target/release/$b" "$ctx/$b"
  strip "$ctx/$b"
  # A static binary has no program interpreter; refuse to ship anything else.
  if readelf -l "$ctx/$b" | grep -q 'Requesting program interpreter'; then
    echo "$b is dynamically linked; refusing to build a FROM scratch image" >&2
    exit 1
  fi
done
cp deploy/Dockerfile "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
