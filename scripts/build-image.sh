#!/usr/bin/env bash
# Builds the `confide:local` image FROM scratch with a statically linked binary.
# The static build uses its own target directory so the normal build cache stays valid.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --profile image --target "$TARGET" --target-dir target-static --bin confide
ctx=target-static/image-context
rm -rf "$ctx" && mkdir -p "$ctx"
cp "target-static/$TARGET/image/confide" "$ctx/confide"
docker build --quiet -t confide:local -f docker/Dockerfile "$ctx" >/dev/null
echo "built confide:local ($(du -h "$ctx/confide" | cut -f1) binary)"
