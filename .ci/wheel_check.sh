#!/usr/bin/env bash
# A regular install, as users get one: build the wheel, install it into a clean venv (no -e, torch from the same
# pinned CPU wheel), and run elfctl from a folder outside the checkout: --help, the recipes, a 2-step quickstart
# train and a 2-sample sample. Then, from the checkout's root, `python -m elfctl --help` in the test venv.
#
#   bash .ci/wheel_check.sh [PYTHON_FOR_CHECKOUT_ROOT]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { printf '\n== wheel check: %s\n' "$*"; }

step "build the wheel"
python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q torch==2.13.0
"$py" -m pip wheel -q --no-deps -w "$work/dist" "$repo"
wheel="$(ls "$work"/dist/elfctl-*.whl)"
# the two source folders land inside the package, under names that collide with nothing
"$py" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
assert tops == {"elfctl"}, f"top-level names in the wheel: {sorted(tops)}"
assert "elfctl/kernels/ops.py" in names and "elfctl/shipped_recipes/quickstart.yaml" in names, "missing files"
assert not any(n.startswith("elfctl/recipes/") for n in names), "elfctl.recipes must be the module only"
print(f"wheel ok: {len(names)} files, top level {sorted(tops)}")
PY

step "install it into a clean venv (no -e)"
"$py" -m pip install -q "$wheel"

cd "$work"  # outside the checkout: nothing may come from it
export ELFCTL_CACHE="${ELFCTL_CACHE:-$HOME/.cache/elfctl}"
elf="$work/venv/bin/elfctl"
step "elfctl --help"; "$elf" --help > /dev/null
step "elfctl recipes ls"; "$elf" recipes ls | grep -q quickstart
step "elfctl recipes show owt"; "$elf" recipes show owt | grep -q "preset: elf-b"
step "elfctl train quickstart (2 steps)"
"$elf" train quickstart train.steps=2 train.batch_size=8 train.log_every=1 data.precompute_latents=false \
    train.run_dir="$work/run"
step "elfctl sample (2 samples)"
"$elf" sample --run "$work/run" --num-samples 2 --steps 2 --out "$work/samples.jsonl"
"$py" - "$work/samples.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
texts = [r for r in rows if "text" in r]
assert len(texts) == 2, f"expected 2 samples, got {len(texts)} rows with text out of {len(rows)}"
print("samples ok:", [t["text"][:40] for t in texts])
PY

if [[ $# -gt 0 ]]; then
  step "python -m elfctl --help from the checkout's root"
  (cd "$repo" && "$1" -m elfctl --help > /dev/null)
fi
echo "wheel check passed"
