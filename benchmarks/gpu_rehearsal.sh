#!/usr/bin/env bash
# CPU rehearsal of gpu_check.sh's day on a bare lent GPU machine, for CI (no GPU needed; about 3-5 minutes on 2
# cores, most of it installing torch):
#
#   bash benchmarks/gpu_rehearsal.sh [WORK_DIR]        # default: a new folder under /tmp
#
# 1. Wheels of the lent machine's package set, at the versions this interpreter can install (torch, triton,
#    transformers, typer, rich, pyyaml, safetensors, pytest, setuptools, wheel, numpy, pyarrow; NOT datasets,
#    rouge-score, gguf, sacrebleu), into WORK_DIR/machine. The only step that reaches the package registry.
# 2. A clean venv holding only that set, installed from that folder with --no-index.
# 3. The carried wheels, as benchmarks/gpu_wheels.sh fills .whl for the machine, but for this interpreter.
# 4. A copy of the repository as the device tool sends it (tracked and untracked-not-ignored files).
# 5. In that copy, with the venv's python3 first on PATH: the machine's one command,
#    `bash benchmarks/gpu_check.sh --install` (the same install line: only the missing carried wheels, then
#    elfctl from the copy with --no-index --no-build-isolation --no-deps). It must finish with no failed step;
#    it lists what it skipped (the steps that need CUDA) with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work="${1:-$(mktemp -d /tmp/gpu-rehearsal.XXXXXX)}"
mkdir -p "$work"
work=$(cd "$work" && pwd)
py="${PYTHON:-python3}"
t0=$SECONDS
# The lent machine's image (docs of the device tool): torch 2.11 + CUDA 13, triton 3.6, transformers 5.17, ...
# torch is the CPU build this machine installs (2.13.0); triton and transformers at the machine's versions.
MACHINE=(torch==2.13.0 triton==3.6.0 transformers==5.17.0 typer rich pyyaml safetensors pytest "setuptools>=77"
         wheel numpy pyarrow)
echo "[rehearsal] $work: downloading the machine's package set (${MACHINE[*]})"
"$py" -m pip download -q -d "$work/machine" "${MACHINE[@]}"
echo "[rehearsal] a clean venv with only that set (--no-index)"
rm -rf "$work/venv"
"$py" -m venv "$work/venv"
"$work/venv/bin/python3" -m pip install -q --no-compile --no-index --find-links "$work/machine" "${MACHINE[@]}"
for absent in datasets rouge_score gguf; do
    if "$work/venv/bin/python3" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$absent') is None)"; then
        echo "error: $absent is installed in the rehearsal venv; the lent machine has none" >&2
        exit 1
    fi
done
echo "[rehearsal] the carried wheels, for this interpreter"
PYTHON="$py" bash benchmarks/gpu_wheels.sh "$work/carry" --this-python
echo "[rehearsal] a copy of the repository as the device tool sends it"
rm -rf "$work/repo"
mkdir -p "$work/repo"
git -C "$repo" ls-files -co --exclude-standard -z | tar -C "$repo" --null -T - -cf - | tar -C "$work/repo" -xf -
echo "[rehearsal] the machine's one command: bash benchmarks/gpu_check.sh --install"
set +e
(cd "$work/repo" && env -u TRITON_INTERPRET PATH="$work/venv/bin:$PATH" OUT="$work/out" \
    bash benchmarks/gpu_check.sh --install --wheels "$work/carry")
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
    echo "[rehearsal] FAILED: gpu_check.sh exited $rc (report: $work/out/gpu_check.json)" >&2
    exit "$rc"
fi
echo "[rehearsal] passed in $((SECONDS - t0)) s: no failed step (report: $work/out/gpu_check.json)"
