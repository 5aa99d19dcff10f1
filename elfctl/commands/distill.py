"""`elfctl distill RECIPE [section.key=value ...]`: progressive distillation into few-step students."""

from __future__ import annotations

from typing import List, Optional

import typer


def distill(
    recipe: str = typer.Argument(..., help="Distillation recipe (quickstart-pd, owt-pd) or path to a .yaml file."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. "
                                                    "distill.teacher=runs/my-run distill.round_steps=200."),
    round_: Optional[int] = typer.Option(None, "--round", help="Run only this round (1-based); the rounds before it "
                                         "must be finished."),
    new: bool = typer.Option(False, "--new", help="Start a new distillation directory beside an existing one "
                             "(runs/NAME-2, ...) instead of resuming its rounds; a round's saved config never "
                             "changes."),
) -> None:
    """Distill a trained ELF teacher into 16-, 8-, 4-, 2- and 1-step students, one round each, in order.

    Each round is a run directory <train.run_dir>/roundK-Nstep that `elfctl sample --run` and `elfctl eval`
    take, sampling with that student's settings by default. Interrupted? Run the same command again: finished
    rounds are skipped and the current one resumes from its last checkpoint.
    Scale out with `torchrun --nproc_per_node N -m elfctl distill RECIPE`.
    """
    from elfctl.config import load_config
    from elfctl.train.distill import run_distillation
    from elfctl.train.distributed import shutdown_distributed

    cfg = load_config(recipe, overrides or [])
    ok = False
    try:
        dirs = run_distillation(cfg, only_round=round_, new=new, log=lambda s: typer.echo(s))
        ok = True
    finally:
        shutdown_distributed(barrier=ok)
    final = dirs[-1] if round_ is None else dirs[round_ - 1]
    typer.echo(f"student: {final}  (sample it with `elfctl sample --run {final}`)")
