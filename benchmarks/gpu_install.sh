#!/usr/bin/env bash
# Install elfctl from this repository copy with no network (the lent GPU machine reaches none), for gpu_check.sh:
#
#   bash benchmarks/gpu_install.sh [WHEELS]          # python3, or $PYTHON; WHEELS default .whl
#
# 1. Of the wheels carried in WHEELS (benchmarks/gpu_wheels.sh fills it), only those whose distribution is not
#    installed yet are installed (--no-index --no-deps: nothing else changes).
# 2. elfctl itself from this copy: --no-index --no-build-isolation --no-deps, built by the interpreter's own
#    setuptools. If that setuptools is too old for pyproject.toml, an isolated build from the carried
#    WHEELS/build (setuptools, wheel) instead, still with no index.
# Datasets, rouge-score and gguf are not installed: nothing gpu_check runs needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${1:-.whl}"
py="${PYTHON:-python3}"
missing=$("$py" - "$wheels" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    try:
        distribution(whl.name.split("-")[0])
    except PackageNotFoundError:
        print(whl)
PY
)
if [[ -n "$missing" ]]; then
    echo "[install] missing here, installed from $wheels: $(for w in $missing; do basename "$w"; done | tr '\n' ' ')"
    # shellcheck disable=SC2086
    "$py" -m pip install -q --no-index --no-deps --no-compile $missing
else
    echo "[install] nothing missing among the wheels in $wheels"
fi
if ! "$py" -m pip install -q --no-index --no-build-isolation --no-deps . ; then
    echo "[install] this setuptools could not build elfctl; building with the carried $wheels/build instead"
    "$py" -m pip install -q --no-index --find-links "$wheels/build" --no-deps .
fi
# from / : the installed package, not this copy's folder
(cd / && "$py" -c "import elfctl, elfctl.kernels, elfctl.shipped_recipes; print('[install] elfctl', elfctl.__version__, 'at', elfctl.__file__)")
