#!/usr/bin/env bash
# Every CUDA check and benchmark of elfctl in one run, well inside 8 minutes on one H100/H200: elfctl installed from
# this copy with no network, then (cheap and telling first) the CUDA kernel and GPU-path tests, the real
# `elfctl train` (ELF-B, bf16, train.compile off and on, 3 steps) and `elfctl sample` on offline inputs made in code,
# the kernel benchmark, ELF-B training steps (MFU), the judge at GPT-2 Large size, ELF-B 32-step SDE sampling,
# and DDP/FSDP over NCCL with >= 2 GPUs. Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (rows for
# docs/BENCHMARKS.md) after every step. Without CUDA it runs what the CPU can and lists what it skipped.
# Exit 1 if a step failed (or the install did).
#
# On a bare lent GPU machine (Python 3.12 as python3, torch, triton, transformers, typer, rich, pyyaml,
# safetensors, pytest, setuptools, wheel; no datasets/rouge-score/gguf; no network), from the repository root,
# carrying the folder .whl (filled here first by `bash benchmarks/gpu_wheels.sh`):
#
#   bash benchmarks/gpu_check.sh --install            # results in $OUT (or gpu_check_results/)
#
# The one-liner for the device tool: run(command="bash benchmarks/gpu_check.sh --install", carry=[".whl"],
# timeout_s=540). Elsewhere, elfctl already installed: bash benchmarks/gpu_check.sh [OUT_DIR] [--budget S] [--only STEP ...]
#
#   --install       install first: the carried wheels of what is missing, then elfctl from this copy
#                   (benchmarks/gpu_install.sh; --no-index, no build isolation)
#   --wheels DIR    the carried wheel folder (default .whl)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_results}"
install=0
wheels=.whl
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) install=1 ;;
        --wheels) wheels="$2"; shift ;;
        --*) args+=("$1") ;;
        *) if [[ ${#args[@]} -eq 0 ]]; then out="$1"; else args+=("$1"); fi ;;
    esac
    shift
done
mkdir -p "$out"
py="${PYTHON:-python3}"
if [[ $install -eq 1 ]]; then
    if ! PYTHON="$py" bash benchmarks/gpu_install.sh "$wheels" 2>&1 | tee "$out/install.log"; then
        echo "[gpu_check] the install failed (see $out/install.log); nothing was run" >&2
        exit 1
    fi
fi
# Compiled kernels on a GPU: never Triton's interpreter (the driver sets it only for its CPU-only check).
unset TRITON_INTERPRET
# No network there: never wait on the hub.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# The budget (default 390 s) ends the steps; this outer limit only catches a hung driver.
exec timeout --kill-after=10 420 "$py" benchmarks/gpu_check.py --out "$out" "${args[@]}"
