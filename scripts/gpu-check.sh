#!/usr/bin/env bash
# GPU checks for the fused AM-Softmax loss, in one command that fits in 8 minutes on one GPU:
# builds with `--features cuda`, runs the CUDA-vs-CPU parity tests (loss, dX, dW within 1e-4)
# and `facelock bench loss --device cuda`. Needs nvcc (candle's cuda feature) and a CUDA GPU;
# NVRTC comes from the toolkit or from the nvidia-cuda-nvrtc-cu12 wheel (scripts/nvrtc-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f scripts/nvrtc-env.sh ] && python3 -c 'import nvidia.cuda_nvrtc' 2>/dev/null; then
    # shellcheck source=/dev/null
    source scripts/nvrtc-env.sh
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

export FACELOCK_REQUIRE_NVRTC=1
out="${GPU_CHECK_OUT:-target/gpu-check}"
mkdir -p "$out"

echo "== build (release, --features cuda)"
timeout 330 cargo build --release -p facelock-host --features cuda --tests --bins

echo "== parity tests (CUDA vs CPU)"
timeout 60 cargo test --release -p facelock-host --features cuda --lib loss::cuda -- \
    --include-ignored --test-threads 1

echo "== benchmark"
timeout 90 "${CARGO_TARGET_DIR:-target}/release/facelock" bench loss --device cuda --gemms --reps 5 \
    --dims 128,512 --classes 10000,100000,1000000 --csv "$out/loss-bench-cuda.csv"
echo "gpu-check: OK (CSV in $out/loss-bench-cuda.csv)"
