"""`elfctl train RECIPE [section.key=value ...]`: train (or resume) an ELF model."""

from __future__ import annotations

from typing import List, Optional

import typer


def train(
    recipe: str = typer.Argument(..., help="Recipe name (quickstart, owt, ...) or path to a .yaml file."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. train.steps=200."),
    fresh: bool = typer.Option(False, "--fresh", help="Refuse to resume: fail if the run directory has checkpoints."),
    new: bool = typer.Option(False, "--new", help="Start a new run directory beside an existing one "
                             "(runs/NAME-2, ...) instead of resuming it; a run's saved config never changes."),
) -> None:
    """Train an ELF model from a recipe; resumes from the run directory's newest intact checkpoint.

    SIGTERM or Ctrl-C: finishes the current step, checkpoints it and exits (143/130); Ctrl-C twice stops at once.

    Scale out with `torchrun --nproc_per_node N -m elfctl train RECIPE` (DDP; NCCL on GPUs, gloo on CPUs).
    """
    from elfctl.config import load_config
    from elfctl.train.distributed import shutdown_distributed
    from elfctl.train.trainer import Trainer

    cfg = load_config(recipe, overrides or [])
    ok = False
    try:
        result = Trainer(cfg, fresh=fresh, new=new, log=lambda s: typer.echo(s)).run()
        ok = True
    finally:
        shutdown_distributed(barrier=ok)
    if result.last_metrics:
        typer.echo(f"final: step {result.step}  loss {result.last_metrics['loss']:.4f}  run {result.run_dir}")
