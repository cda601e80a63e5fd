#!/usr/bin/env bash
# Cross-builds facelockd for aarch64 and runs it under qemu-aarch64 on a pseudo-terminal:
# Hello, one enrollment, one verify (the host side is the native facelockd_driver example).
# Needs: rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu, qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

start=$(date +%s)
cargo build -p facelock-firmware --bin facelockd --target aarch64-unknown-linux-gnu --profile arm
echo "aarch64 build (profile arm): $(( $(date +%s) - start ))s"

cargo build -p facelock-firmware --example facelockd_driver --features test-support
binary="$target_dir/aarch64-unknown-linux-gnu/arm/facelockd"
file "$binary" 2>/dev/null || true

start=$(date +%s)
"$target_dir/debug/examples/facelockd_driver" smoke "$binary" \
  --wrap qemu-aarch64 -L /usr/aarch64-linux-gnu
echo "qemu smoke: $(( $(date +%s) - start ))s"
