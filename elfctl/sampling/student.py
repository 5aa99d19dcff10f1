"""A distilled student's sampler settings at each step count (``distill.samplers``).

A progressive-distillation student is sampled with the authors' few-step table whatever step count it runs at
(SDE gamma 1.5 / SC-CFG 2.5 at 1-8 steps, gamma 2.0 / SC-CFG 2.0 at 16 and 32): its run's ``sample`` section holds
only the setting of the step count it was trained for. So ``elfctl sample --steps N`` on a student, and a
``distill: true`` variant of ``elfctl ablate``, take row N of the table for every setting not given explicitly.

A run is a student when it is a round of ``elfctl distill`` (it holds ``distill_round.json``) or an import of the
authors' released student (its provenance names the owt-pd recipe or a PD source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

ROUND_META = "distill_round.json"   # written by elfctl.train.distill into every round's run directory
# Settings given together: the sampler and gamma mean one thing (elfctl.sampling.settings); an unconditional
# model's cfg is its SC-CFG scale.
TIED = {"sampler": ("sampler", "gamma"), "gamma": ("sampler", "gamma"), "sc_cfg": ("sc_cfg",), "cfg": ("sc_cfg",)}


def is_student(run_dir: Path) -> bool:
    from elfctl.authors.importer import read_provenance
    from elfctl.authors.recipe import recipe_from_name

    run_dir = Path(run_dir)
    if (run_dir / ROUND_META).is_file():
        return True
    prov = read_provenance(run_dir)
    return prov is not None and (prov.get("recipe") == "owt-pd" or recipe_from_name(str(prov.get("source"))) == "owt-pd")


def step_settings(samplers: Mapping[int, Mapping[str, Any]], steps: int, given: Iterable[str] = ()) -> dict:
    """Row ``steps`` of the table, less the settings ``given`` explicitly (and those tied to them); {} for a step
    count the table has no row for (the run's own settings stay)."""
    row = dict(samplers.get(int(steps), {}))
    for key in given:
        for tied in TIED.get(key, (key,)):
            row.pop(tied, None)
    return row
