#!/usr/bin/env bash
# Builds the static (musl) echoload and the FROM scratch image.
#   deploy/build-image.sh [TAG]      (default echoload:latest; uses podman, else buildah)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-echoload:latest}
rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
cargo build --release --quiet --target x86_64-unknown-linux-musl -p loadgen
bin=target/x86_64-unknown-linux-musl/release/echoload
# A FROM scratch image has no loader or libc: the binary must be static.
if readelf -l "$bin" | grep -q 'INTERP' || readelf -d "$bin" | grep -q '(NEEDED)'; then
    echo "build-image.sh: $bin is not statically linked" >&2
    exit 1
fi
ctx=target/image
rm -rf "$ctx" && mkdir -p "$ctx"
cp "$bin" "$ctx/echoload"
if command -v podman >/dev/null; then
    podman build --quiet -f deploy/Containerfile -t "$tag" "$ctx"
else
    buildah bud --quiet -f deploy/Containerfile -t "$tag" "$ctx"
fi
