"""`elfctl eval`: score samples (Gen PPL + entropy, BLEU, ROUGE, diversity) under one declared protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer

OFFLINE_JUDGE = "builtin:smollm2-135m"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def _ci(pair) -> str:
    if not pair or any(x is None or (isinstance(x, float) and not math.isfinite(x)) for x in pair):
        return "-"
    return f"[{_fmt(pair[0])}, {_fmt(pair[1])}]"


def _pm(row: dict, key: str) -> str:
    std = row.get(f"{key}_std_over_seeds")
    return _fmt(row.get(key)) + (f" ± {_fmt(std)}" if std is not None else "")


def _lines(res: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections of (label, value) pairs, shared by the rich table and the plain output."""
    sections = []
    for name, row in res.get("rows", {}).items():
        spread = (f"{row['seeds']} seeds, mean ± std" if "seeds" in row else "95% bootstrap CI")
        items = [("Gen PPL", _pm(row, "genppl")), ("entropy (nats)", _pm(row, "entropy"))]
        if "seeds" not in row:
            items += [("Gen PPL 95% CI", _ci(row.get("genppl_ci95"))),
                      ("entropy 95% CI", _ci(row.get("entropy_ci95")))]
        items += [("samples", str(row.get("num_samples"))), ("scored tokens", str(row.get("scored_tokens")))]
        title = {"model": "samples", "data": "data's own Gen PPL", "random": "random tokens"}.get(name, name)
        if row.get("source"):
            title += f" ({row['source']})"
        sections.append((f"{title} — {spread}", items))
    if "bleu" in res:
        items = [("BLEU", _fmt(res["bleu"]) + (f" ± {_fmt(res['bleu_std_over_seeds'])}"
                                                if "bleu_std_over_seeds" in res else ""))]
        if "bleu_ci95" in res:
            items.append(("BLEU 95% CI", _ci(res["bleu_ci95"])))
        sections.append(("BLEU (sacreBLEU corpus, lowercase, effective order)", items))
    if "rouge" in res:
        std = res.get("rouge_std_over_seeds", {})
        cis = res.get("rouge_ci95", {})
        items = [(k, _fmt(v) + (f" ± {_fmt(std[k])}" if k in std else "") +
                  (f"  {_ci(cis[k])}" if k in cis else "")) for k, v in res["rouge"].items()]
        sections.append(("ROUGE F ×100 (stemmed, averaged)", items))
    if "diversity" in res:
        d = res["diversity"]
        items = [(k, _fmt(v) if not isinstance(v, dict) else ", ".join(f"{b}: {c}" for b, c in v.items()))
                 for k, v in d.items()]
        sections.append(("diversity (whitespace words)", items))
    return sections


def _print(res: dict, out: Path) -> None:
    import sys

    sections = _lines(res)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        for title, items in sections:
            table = Table(title=title, show_header=False)
            table.add_column("metric")
            table.add_column("value")
            for k, v in items:
                table.add_row(k, v)
            console.print(table)
        console.print(res["protocol_line"], markup=False, highlight=False)
        console.print(res["judge_label"], markup=False, highlight=False)
        console.print(f"results -> {out}", markup=False, highlight=False)
        return
    for title, items in sections:
        typer.echo(f"[{title}]")
        for k, v in items:
            typer.echo(f"  {k}: {v}")
    typer.echo(res["protocol_line"])
    typer.echo(res["judge_label"])
    typer.echo(f"results -> {out}")


def _default_judge(run_cfg) -> str:
    """The run's eval.judge when it loads here, else the offline judge (with a note on stderr)."""
    from elfctl.errors import ConfigError

    if run_cfg is None:
        return OFFLINE_JUDGE
    judge = run_cfg.eval.judge
    try:
        from elfctl.data.assets import is_hub_id, resolve_asset
    except ImportError:
        return judge
    if is_hub_id(judge):
        try:
            resolve_asset(judge)
        except ConfigError:
            typer.echo(f"note: judge {judge} (the recipe's eval.judge) is not available offline; using "
                       f"{OFFLINE_JUDGE}", err=True)
            return OFFLINE_JUDGE
    return judge


def evaluate(
    metric: str = typer.Option("genppl", "--metric", help="genppl, entropy, bleu, rouge, diversity or all "
                                                          "(comma-separated). Gen PPL always shows entropy."),
    samples: Optional[List[Path]] = typer.Option(None, "--samples", help="Samples file(s): elfctl JSONL, .json list "
                                                 "of strings, or text. Repeat for one file per seed (mean ± std). "
                                                 "Default: the newest samples file of the newest run."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the newest samples file is looked for."),
    references: Optional[Path] = typer.Option(None, "--references", help="References for BLEU/ROUGE (default: "
                                              "the samples' 'reference' fields)."),
    judge: Optional[str] = typer.Option(None, "--judge", help="Gen PPL judge: hub id (gpt2-large), local dir or "
                                        f".gguf, or {OFFLINE_JUDGE} (default: the run's eval.judge if it loads "
                                        "here, else the offline judge)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="elf (ELF-METHOD §5) or mdlm (MDLM/Duo's "
                                           "rules). Default: the run's eval.protocol, else elf."),
    reference_text: Optional[Path] = typer.Option(None, "--reference-text", help="Real held-out text scored "
                                                  "through the same rules (the data's own Gen PPL)."),
    baselines: bool = typer.Option(False, "--baselines", help="Also score the run's held-out data and random "
                                   "tokens, both through the model tokenizer's round trip."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per judge forward (default: the "
                                             "run's eval.judge_batch_size, else 8). Does not change results."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Score at most this many samples "
                                              "(the first ones) of each file."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Bootstrap resamples for 95% intervals "
                                            "(0: none; default: the run's eval.bootstrap, else 1000)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results JSON (default: "
                                       "<run>/eval/<samples-stem>.<metric>.json)."),
) -> None:
    """Score samples and print the results with the protocol hash and the judge label; writes a results JSON."""
    from elfctl.errors import ConfigError
    from elfctl.eval.inputs import newest_samples, read_samples
    from elfctl.eval.report import parse_metrics, score_samples

    metrics = parse_metrics(metric)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size: {batch_size} is out of range; must be >= 1")
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples: {max_samples} is out of range; must be >= 1")
    if bootstrap is not None and bootstrap < 0:
        raise ConfigError(f"--bootstrap: {bootstrap} is out of range; must be >= 0")
    if protocol is not None and protocol not in ("elf", "mdlm"):
        raise ConfigError(f"--protocol: {protocol!r} is not valid; choose elf or mdlm")
    paths = list(samples or []) or [newest_samples(runs_dir)]
    loaded = [read_samples(p) for p in paths]
    run_cfg = None
    run_dir = loaded[0].header.get("run_dir")
    if run_dir and (Path(run_dir) / "config.yaml").is_file():
        try:
            from elfctl.config import load_resolved

            run_cfg = load_resolved(Path(run_dir) / "config.yaml")
        except ConfigError as e:
            typer.echo(f"note: ignoring the run's config ({e})", err=True)
    ev = run_cfg.eval if run_cfg is not None else None
    res = score_samples(loaded, metrics, judge=judge or _default_judge(run_cfg),
                        protocol=protocol or (ev.protocol if ev else "elf"),
                        judge_dtype=ev.judge_dtype if ev else "float32",
                        max_length=ev.max_judge_length if ev else 1024,
                        batch_size=batch_size or (ev.judge_batch_size if ev else 8),
                        bootstrap=bootstrap if bootstrap is not None else (ev.bootstrap if ev else 1000),
                        references=references, reference_text=reference_text, run_cfg=run_cfg,
                        baselines=baselines, max_samples=max_samples)
    if out is None:
        base = Path(run_dir) / "eval" if run_dir else paths[0].parent
        tag = "all" if metric.strip() == "all" else "+".join(m for m in metrics if m != "entropy" or
                                                             "genppl" not in metrics)
        out = base / f"{paths[0].stem}.{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(res, indent=2), encoding="utf-8")
    tmp.replace(out)
    _print(res, out)
