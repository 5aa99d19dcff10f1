#!/usr/bin/env bash
# Every CUDA check and benchmark of elfctl in one run (<= 8 minutes on one H100/H200): the compiled kernel tests,
# the kernel benchmark, ELF-B training steps (bf16, torch.compile, MFU), DDP/FSDP over NCCL with >= 2 GPUs, ELF-B
# 32-step SDE sampling at length 1024 (batch 64 and 256, with and without the kernels), and the judge at GPT-2
# Large size. Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (rows for docs/BENCHMARKS.md).
# Without CUDA it runs what the CPU can and lists what it skipped. Exit 1 if a step failed.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--budget SECONDS] [--only STEP ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_results}"
if [[ $# -gt 0 && "$1" != --* ]]; then out="$1"; shift; fi
# Compiled kernels on a GPU: never Triton's interpreter (the driver sets it only for its CPU-only check).
unset TRITON_INTERPRET
exec timeout --kill-after=10 500 python benchmarks/gpu_check.py --out "$out" "$@"
