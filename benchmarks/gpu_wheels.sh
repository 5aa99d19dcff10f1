#!/usr/bin/env bash
# Fill the wheel folder that travels with the repository to the lent GPU machine (no network there), for
# `gpu_check.sh --install`. Run it here, where pip reaches the registry:
#
#   bash benchmarks/gpu_wheels.sh [DEST] [--python-version 3.12] [--this-python]
#
# DEST (default .whl, git-ignored) gets the wheels of what elfctl imports beyond that machine's image (torch,
# triton, transformers, typer, rich, pyyaml, safetensors, pytest, setuptools, wheel): sacrebleu and its
# dependencies; and DEST/build gets setuptools and wheel for an isolated build where the image's setuptools is too
# old. gpu_install.sh installs only those not installed there. Not datasets, rouge-score or gguf: nothing gpu_check
# runs needs them. Pinned, so a rehearsal and the machine install the same files.
#   --python-version V   wheels for CPython V on manylinux x86-64 (default 3.12, the lent machine's)
#   --this-python        wheels for the interpreter running pip here instead (the CPU rehearsal)
# Fails if the folder would exceed 60 MiB (the device tool carries 64 MiB in all).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
pyver=3.12
target=(--python-version "$pyver" --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux1_x86_64 --platform any)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python-version) pyver="$2"; target[1]="$pyver"; shift ;;
        --this-python) target=() ;;
        -*) echo "error: unknown option $1; valid: --python-version V, --this-python" >&2; exit 2 ;;
        *) dest="$1" ;;
    esac
    shift
done
# What elfctl imports that the lent machine's image may lack (the eval commands' BLEU, and what sacrebleu needs).
CARRIED=(sacrebleu==2.6.0 portalocker==4.4.2 tabulate==0.10.0 colorama==0.4.6 lxml==6.2.0 regex==2026.12.2)
BUILD=(setuptools==84.2.1 wheel==0.48.0)
py="${PYTHON:-python3}"
mkdir -p "$dest/build"
"$py" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dest" "${CARRIED[@]}"
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$dest/build" "${BUILD[@]}"
mib=$(du -sm "$dest" | cut -f1)
ls "$dest" "$dest/build"
echo "[gpu_wheels] $dest: ${mib} MiB"
if [[ $mib -gt 60 ]]; then
    echo "error: $dest holds ${mib} MiB; the device tool carries at most 64 MiB with the repository" >&2
    exit 1
fi
