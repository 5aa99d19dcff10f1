"""`elfctl ablate NAME`: run a built-in or user ablation (train → sample → eval per variant)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from elfctl.ablate.spec import builtin_specs


def with_interval(value, ci, digits: int) -> str:
    """``418.8 [388.7, 452.9]``: a score with its bootstrap interval, so a table answers "do these overlap?"."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


# The table's columns for the metrics an ablation asked for: (metric, title, row key, digits) of the scores
# shown with their 95% interval, then (metric, row keys) of the plain numbers.
SCORED_COLUMNS = (("genppl", "Gen PPL [95% CI]", "genppl", 1), ("entropy", "entropy [95% CI]", "entropy", 3))
PLAIN_COLUMNS = (("rouge", ("rouge1", "rouge2", "rougeL")), ("bleu", ("bleu",)),
                 ("diversity", ("distinct_1", "distinct_2", "distinct_3", "repetition_4gram", "empty_samples",
                                "mean_length_words")))


def ablate(
    name: Optional[str] = typer.Argument(None, help=f"Built-in ablation ({', '.join(builtin_specs())}) or a path "
                                                    "to your own ablation YAML (elfctl ablate --list shows the "
                                                    "format)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides for every variant."),
    scale: str = typer.Option("quick", "--scale", help="quick (embedded data, CPU minutes per variant) or paper "
                                                       "(the paper's recipes; needs the hub and GPUs)."),
    out: Path = typer.Option(Path("runs/ablate"), "--out", help="Where runs, samples, results and plots go."),
    list_: bool = typer.Option(False, "--list", help="List the built-in ablations and the spec format, and exit."),
) -> None:
    """Run an ablation study; finished runs, samples and scores are reused (a finished run elsewhere under runs/
    that trained the same model too), so it resumes after interruption."""
    from rich.console import Console
    from rich.table import Table

    from elfctl.ablate.spec import load_spec
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
        example = next(iter(builtin_specs().values()))
        console.print(f"Write your own: copy one of {example.parent}/*.yaml and pass its path. Keys: description, "
                      "finding, scales: {NAME: {recipe, overrides}}, variants: [{name, train: [k=v], sample: "
                      "[sample.k=v]}], plot_x, metrics (see docs/ABLATIONS.md).", markup=False, highlight=False)
        return
    if name is None:
        raise ConfigError("name an ablation (see `elfctl ablate --list`) or pass --list")
    from elfctl.ablate.runner import run_ablation

    spec = load_spec(name)
    summary = run_ablation(spec, scale, out, extra=list(overrides or []),
                           log=lambda s: console.print(s, markup=False, highlight=False))
    asked = summary.get("metrics") or []
    table = Table(title=f"{spec.name} ({scale}) — {spec.description}")
    scored = [(title, key, digits) for metric, title, key, digits in SCORED_COLUMNS if metric in asked]
    extra = [k for metric, keys in PLAIN_COLUMNS for k in keys
             if metric in asked and any(k in r for r in summary["rows"])]
    for col in ["variant", "train loss", *[title for title, _, _ in scored], *extra]:
        table.add_column(col)
    for r in summary["rows"]:
        fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        table.add_row(r["variant"], fmt(r.get("train_loss")),
                      *[with_interval(r.get(key), r.get(f"{key}_ci95"), digits) for _, key, digits in scored],
                      *[fmt(r.get(k)) for k in extra])
    console.print(table)
    reused = sorted({r["reused_run"] for r in summary["rows"] if r.get("reused_run")})
    if reused:
        console.print(f"trained model reused from: {', '.join(reused)}", markup=False, highlight=False)
    judge = next((r.get("judge") for r in summary["rows"] if r.get("judge")), None)
    judged = f"Gen PPL judge: {judge}. " if judge and "genppl" in asked else ""
    console.print(f"{judged}Finding under test: {spec.finding}", markup=False, highlight=False)
    console.print(f"results: {Path(out) / f'{spec.name}-{scale}' / 'results.json'}; plots: "
                  + ", ".join(summary.get("plots", [])), markup=False, highlight=False)
