"""`elfctl ablate NAME`: run a built-in or user ablation (train → sample → eval per variant)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def ablate(
    name: Optional[str] = typer.Argument(None, help="Built-in ablation (xpred-vs-vpred, sde-vs-ode, guidance, "
                                                    "steps, encoder) or a path to your own ablation YAML."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides for every variant."),
    scale: str = typer.Option("quick", "--scale", help="quick (embedded data, CPU minutes per variant) or paper "
                                                       "(the paper's recipes; needs the hub and GPUs)."),
    out: Path = typer.Option(Path("runs/ablate"), "--out", help="Where runs, samples, results and plots go."),
    list_: bool = typer.Option(False, "--list", help="List the built-in ablations and exit."),
) -> None:
    """Run an ablation study; finished runs, samples and scores are reused, so it resumes after interruption."""
    from rich.console import Console
    from rich.table import Table

    from elfctl.ablate.spec import builtin_specs, load_spec
    from elfctl.errors import ConfigError

    console = Console()
    if list_:
        table = Table(title="built-in ablations")
        for col in ("name", "variants", "tests the finding"):
            table.add_column(col)
        for key in builtin_specs():
            spec = load_spec(key)
            table.add_row(key, ", ".join(v.name for v in spec.variants), spec.finding)
        console.print(table)
        console.print("Write your own: copy one of " + str(next(iter(builtin_specs().values())).parent)
                      + "/*.yaml and pass its path.")
        return
    if name is None:
        raise ConfigError("name an ablation (see `elfctl ablate --list`) or pass --list")
    from elfctl.ablate.runner import run_ablation

    spec = load_spec(name)
    spec.scale(scale)  # validate before any work
    summary = run_ablation(spec, scale, out, extra=list(overrides or []), log=lambda s: console.print(s))
    judge = next((r.get("judge") for r in summary["rows"] if r.get("judge")), "?")
    table = Table(title=f"{spec.name} ({scale}) — {spec.description}")
    cols = ["variant", "train loss", "Gen PPL", "entropy"]
    extra = [k for k in ("rouge1", "rouge2", "rougeL", "bleu") if any(k in r for r in summary["rows"])]
    for col in cols + extra:
        table.add_column(col)
    for r in summary["rows"]:
        fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        table.add_row(r["variant"], fmt(r.get("train_loss")), fmt(r.get("genppl")), fmt(r.get("entropy")),
                      *[fmt(r.get(k)) for k in extra])
    console.print(table)
    console.print(f"Gen PPL judge: {judge}. Finding under test: {spec.finding}")
    console.print(f"results: {Path(out) / f'{spec.name}-{scale}' / 'results.json'}; plots: "
                  + ", ".join(summary.get("plots", [])))
