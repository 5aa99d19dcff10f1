"""`elfctl eval`: score samples (Gen PPL + entropy, BLEU, ROUGE, diversity) under one declared protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

OFFLINE_JUDGE = "builtin:smollm2-135m"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def evaluate(
    metric: str = typer.Option("genppl", "--metric", help="genppl, entropy, bleu, rouge, diversity or all "
                                                          "(comma-separated). Gen PPL always shows entropy."),
    samples: Optional[List[Path]] = typer.Option(None, "--samples", help="Samples file(s) (repeat for one file "
                                                 "per seed: mean ± std). Default: the newest samples file."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the newest samples file is looked for."),
    references: Optional[Path] = typer.Option(None, "--references", help="References for BLEU/ROUGE (default: "
                                              "the samples' 'reference' fields)."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Gen PPL judge: hub id (gpt2-large), local dir, or "
                                        f"{OFFLINE_JUDGE} (default: the run's eval.judge if it loads here, else "
                                        "the offline judge)."),
    protocol: str = typer.Option("elf", "--protocol", help="elf (ELF-METHOD §5) or mdlm (MDLM/Duo's rules)."),
    reference_text: Optional[Path] = typer.Option(None, "--reference-text", help="Real text scored beside the "
                                                  "samples (the data's own Gen PPL)."),
    baselines: bool = typer.Option(False, "--baselines", help="Also score the run's held-out data and random "
                                   "tokens, both through the model tokenizer's round trip."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per judge forward."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Score at most this many samples."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for 95% intervals (0: none)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results JSON (default: <run>/eval/<samples>.json)."),
) -> None:
    """Score samples and print a table; writes the results (with the protocol and its hash) as JSON."""
    import sys

    from elfctl.errors import ConfigError
    from elfctl.eval.inputs import newest_samples, read_samples
    from elfctl.eval.report import parse_metrics, score_samples

    metrics = parse_metrics(metric)
    if batch_size < 1:
        raise ConfigError("--batch-size: must be >= 1")
    if protocol not in ("elf", "mdlm"):
        raise ConfigError(f"--protocol: {protocol!r} is not valid; choose elf or mdlm")
    paths = list(samples or []) or [newest_samples(runs_dir)]
    loaded = [read_samples(p) for p in paths]
    if max_samples:
        for s in loaded:
            s.texts, s.references = s.texts[:max_samples], s.references[:max_samples]
    run_cfg = None
    run_dir = loaded[0].header.get("run_dir")
    if run_dir and (Path(run_dir) / "config.yaml").is_file():
        from elfctl.config import load_resolved

        run_cfg = load_resolved(Path(run_dir) / "config.yaml")
    if judge is None:
        judge = run_cfg.eval.judge if run_cfg is not None else OFFLINE_JUDGE
        from elfctl.data.assets import is_hub_id

        if is_hub_id(judge):
            try:
                from elfctl.data.assets import resolve_asset

                resolve_asset(judge)
            except ConfigError:
                typer.echo(f"note: judge {judge} is not available offline; using {OFFLINE_JUDGE}", err=True)
                judge = OFFLINE_JUDGE
    res = score_samples(loaded, metrics, judge_source=judge, protocol_name=protocol,
                        judge_dtype=run_cfg.eval.judge_dtype if run_cfg else "float32", batch_size=batch_size,
                        bootstrap=bootstrap, references=references, reference_text=reference_text, run_cfg=run_cfg,
                        baselines=baselines)
    if out is None:
        base = Path(run_dir) / "eval" if run_dir else paths[0].parent
        out = base / f"{paths[0].stem}.{metric.replace(',', '+')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2), encoding="utf-8")
    tmp.replace(out)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    if res["rows"]:
        table = Table(title=f"Gen PPL and entropy — {res.get('judge_label', judge)}")
        for col in ("text", "samples", "Gen PPL", "95% CI", "entropy", "scored tokens"):
            table.add_column(col)
        for name, row in res["rows"].items():
            ci = row.get("genppl_ci95") or [None, None]
            spread = (f" ± {_fmt(row['genppl_std_over_seeds'])} (seeds)" if "genppl_std_over_seeds" in row else "")
            table.add_row(name, str(row["num_samples"]), _fmt(row["genppl"]) + spread,
                          f"[{_fmt(ci[0])}, {_fmt(ci[1])}]", _fmt(row["entropy"]), str(row["scored_tokens"]))
        console.print(table)
    for key in ("bleu", "rouge", "diversity"):
        if key in res:
            val = res[key]
            console.print(f"{key}: " + (", ".join(f"{k} {_fmt(v)}" for k, v in val.items()) if isinstance(val, dict)
                                        else _fmt(val)))
    console.print(f"protocol {res['protocol']['name']} #{res['protocol_hash']}; results -> {out}")
