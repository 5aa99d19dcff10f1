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
SCORED_COLUMNS = (("genppl", "Gen PPL", "genppl", 1), ("entropy", "entropy", "entropy", 3))
PLAIN_COLUMNS = (("rouge", ("rouge1", "rouge2", "rougeL")), ("bleu", ("bleu",)),
                 ("diversity", ("distinct_1", "distinct_2", "distinct_3", "repetition_4gram", "empty_samples",
                                "mean_length_words")))


def ablate(
    name: Optional[str] = typer.Argument(None, help=f"Built-in ablation ({', '.join(builtin_specs())}) or a path "
                                                    "to your own ablation YAML (elfctl ablate --list shows the "
                                                    "format)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides for every variant."),
    scale: str = typer.Option("quick", "--scale", help="quick (embedded data, CPU minutes per variant), small "
                                                       "(embedded data, ~40 min per trained model on 2 CPU cores), "
                                                       "paper (the paper's recipes; needs the hub and GPUs); steps, "
                                                       "xpred-vs-vpred and distill-steps also gpu-1h (one H100 "
                                                       "hour per model; needs the hub)."),
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
    from elfctl.ablate.costs import fmt_count

    seeds = summary.get("seeds")
    # over seeds (with the 95% interval of their samples pooled), or the bootstrap interval of one draw
    spread = "± std [pooled 95% CI]" if seeds else "[95% CI]"
    scored = [(title, key, digits) for metric, title, key, digits in SCORED_COLUMNS if metric in asked]
    extra = [k for metric, keys in PLAIN_COLUMNS for k in keys
             if metric in asked and any(k in r for r in summary["rows"])]
    costs = [(k, label) for k, label in (("val_nelbo_ppl", "val NELBO PPL"), ("nfe", "NFE"),
                                          ("seconds_per_sample", "s/sample"), ("params", "params"),
                                          ("train_flops_per_step", "train FLOPs/step"))
             if len({str(r.get(k)) for r in summary["rows"]}) > 1 or k == "nfe"]
    for col in ["variant", "train loss", *[f"{title} {spread}" for title, _, _ in scored], *extra,
                *[label for _, label in costs]]:
        table.add_column(col)
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731

    def score(r, key, digits):
        if seeds and r.get(key) is not None:
            pooled = r.get(f"{key}_pooled_ci95")
            return (f"{r[key]:.{digits}f}" + (f" ± {r[key + '_std']:.{digits}f}" if r.get(key + "_std") else "")
                    + (f" [{pooled[0]:.{digits}f}, {pooled[1]:.{digits}f}]" if pooled else ""))
        return with_interval(r.get(key), r.get(f"{key}_ci95"), digits)

    def cost(k, v):
        if k in ("params", "train_flops_per_step"):
            return fmt_count(v)
        return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)

    for r in summary["rows"]:
        table.add_row(r["variant"], fmt(r.get("train_loss")), *[score(r, key, digits) for _, key, digits in scored],
                      *[fmt(r.get(k)) for k in extra], *[cost(k, r.get(k)) for k, _ in costs])
    console.print(table)
    for name, b in (summary.get("baselines") or {}).items():
        console.print(f"{'held-out data' if name == 'data' else 'random tokens'}: Gen PPL {b['genppl']:.1f}, "
                      f"entropy {b['entropy']:.3f}", markup=False, highlight=False)
    reused = sorted({r["reused_run"] for r in summary["rows"] if r.get("reused_run")})
    if reused:
        console.print(f"trained model reused from: {', '.join(reused)}", markup=False, highlight=False)
    judge = next((r.get("judge") for r in summary["rows"] if r.get("judge")), None)
    judged = f"Gen PPL judge: {judge}. " if judge and "genppl" in asked else ""
    console.print(f"{judged}Finding under test: {spec.finding}", markup=False, highlight=False)
    console.print(f"results: {Path(out) / f'{spec.name}-{scale}' / 'results.json'}; plots: "
                  + ", ".join(summary.get("plots", [])), markup=False, highlight=False)
