"""The ``distill`` step of an ablation: a variant marked ``distill: true`` samples the distilled student of the
trained model instead of the model itself (``elfctl ablate distill-steps``).

The scale names the distillation recipe (``scales: {quick: {recipe: quickstart, distill: quickstart-pd}}``). Its
teacher is the run the train step produced or reused. When that is the recipe's own ``distill.teacher`` (a user
who ran ``elfctl train quickstart && elfctl distill quickstart-pd``), the recipe's own run directory is used, so
finished rounds are reused; any other teacher gets its students under ``<ablation>/runs/<recipe>``. Unfinished
rounds run (or resume) here. The student then samples with ``distill.samplers`` for the variant's step count.
"""

from __future__ import annotations

from pathlib import Path

from elfctl.config import apply_overrides, config_from_dict, load_config, load_resolved
from elfctl.errors import ConfigError
from elfctl.rundir.names import CONFIG_NAME


def distill_step(job, v) -> None:
    """Replace the variant's run by the final student distilled from it (no-op for other variants)."""
    if not v.variant.distill:
        return
    from elfctl.sampling.student import step_settings
    from elfctl.rundir import checkpoint as ckpt
    from elfctl.train.distill import plan_rounds, run_distillation

    recipe = job.spec.scales[job.scale].get("distill")
    if not recipe:
        raise ConfigError(f"variant '{v.variant.name}' has distill: true, but scale '{job.scale}' names no "
                          f"distillation recipe (scales.{job.scale}.distill: quickstart-pd)")
    cfg = load_config(recipe, [o for o in job.overrides if not o.startswith("sample.")])
    teacher = Path(v.run_dir)
    own_teacher = cfg.distill.teacher and Path(cfg.distill.teacher).resolve() == teacher.resolve()
    run_dir = cfg.resolved_run_dir() if own_teacher else job.root / "runs" / cfg.name
    cfg = load_config(recipe, [o for o in job.overrides if not o.startswith("sample.")]
                      + [f"distill.teacher={teacher}", f"train.run_dir={run_dir}"])
    final = plan_rounds(cfg)[-1].run_dir
    job.log(f"[{v.variant.name}] distill {recipe} from teacher {teacher} -> {run_dir}")
    run_distillation(cfg, log=job.log)
    latest = ckpt.latest_checkpoint(final)
    v.run_dir, v.step, v.reused = final, int(ckpt.read_meta(latest)["step"]), None
    v.trained_cfg = load_resolved(latest / CONFIG_NAME)
    # The student samples with the distillation recipe's settings for this step count, then the variant's own.
    data = v.trained_cfg.to_dict()
    n = v.cfg.sample.steps
    data["sample"].update(step_settings(cfg.distill.samplers, n))
    data["sample"]["steps"] = n
    v.cfg = config_from_dict(apply_overrides(data, v.variant.sample))
