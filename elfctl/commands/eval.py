"""`elfctl eval`: score samples (Gen PPL + entropy, BLEU, ROUGE, diversity) under one declared protocol."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import List, Optional

import typer

from elfctl.config import EvalConfig, field_help
from elfctl.eval.judge import OFFLINE_JUDGE
from elfctl.rundir.names import CONFIG_NAME

# The flags that override a key of the run's eval section (elfctl.config.EvalConfig): their help, valid values and
# defaults are that key's, so the command and the recipe schema cannot drift apart.
EVAL_FLAGS = {"--judge": "judge", "--judge-dtype": "judge_dtype", "--protocol": "protocol",
              "--batch-size": "judge_batch_size", "--bootstrap": "bootstrap", "--reference-text": "reference_text"}


def _eval_option(flag: str, note: str = "", default: str | None = None) -> typer.models.OptionInfo:
    """A typer option for ``flag`` with the help text of the eval key it overrides and where its default comes from
    (``default``: that sentence, when it is not "the run's key, else the schema's default")."""
    key = EVAL_FLAGS[flag]
    if default is None:
        value = getattr(EvalConfig(), key)
        default = f"Default: the run's eval.{key}, else {'none' if value is None else value}."
    return typer.Option(None, flag, show_default=False, help=f"{field_help('eval', key)}{note} {default}")


def eval_settings(run_cfg, given: dict) -> EvalConfig:
    """The eval section that applies: the run's (or the schema's defaults without a run), with the flags given
    (``{eval key: value}``, None = not given) checked by that key's own rules and put over it."""
    from dataclasses import replace

    from elfctl.config import check_value

    flag_of = {key: flag for flag, key in EVAL_FLAGS.items()}
    base = run_cfg.eval if run_cfg is not None else EvalConfig()
    chosen = {key: check_value("eval", key, value, name=flag_of.get(key))
              for key, value in given.items() if value is not None}
    return replace(base, **chosen)


def _fmt(v, like: Optional[float] = None) -> str:
    """Plain decimals, never exponent notation: 3 places below 1000, 1 above (by ``like``'s size when given, so
    the two ends of an interval and a value with its spread print alike: ``[60.3, 27620.4]``)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        size = abs(like) if like is not None and math.isfinite(like) else abs(v)
        return f"{v:.3f}" if size < 1000 else f"{v:.1f}"
    return str(v)


def _ci(pair) -> str:
    if not pair or any(x is None or (isinstance(x, float) and not math.isfinite(x)) for x in pair):
        return "-"
    like = max(abs(float(x)) for x in pair)
    return f"[{_fmt(float(pair[0]), like)}, {_fmt(float(pair[1]), like)}]"


def _pm(row: dict, key: str) -> str:
    value, std = row.get(key), row.get(f"{key}_std_over_seeds")
    like = value if isinstance(value, float) else None
    return _fmt(value) + (f" ± {_fmt(std, like)}" if std is not None else "")


def _row_items(row: dict) -> list[tuple[str, str]]:
    """The lines of one Gen PPL / entropy row: only the numbers that were scored."""
    items = []
    for key, label in (("genppl", "Gen PPL"), ("entropy", "entropy (nats)")):
        if key in row:
            items.append((label, _pm(row, key)))
    if "seeds" not in row:
        for key, label in (("genppl", "Gen PPL 95% CI"), ("entropy", "entropy 95% CI")):
            if f"{key}_ci95" in row:
                items.append((label, _ci(row[f"{key}_ci95"])))
    else:  # the seeds' samples as one set: a corpus Gen PPL and intervals over all of them
        if "genppl_pooled" in row:
            items.append(("Gen PPL, all seeds' samples pooled", _fmt(row["genppl_pooled"])))
        for key, label in (("genppl", "Gen PPL 95% CI (pooled)"), ("entropy", "entropy 95% CI (pooled)")):
            if f"{key}_pooled_ci95" in row:
                items.append((label, _ci(row[f"{key}_pooled_ci95"])))
    items.append(("samples", str(row.get("num_samples"))))
    if "scored_tokens" in row:
        items.append(("scored tokens", str(row["scored_tokens"])))
    return items


def _lines(res: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections of (label, value) pairs, shared by the rich table and the plain output."""
    sections = []
    for name, row in res.get("rows", {}).items():
        spread = (f"{row['seeds']} seeds, mean ± std" if "seeds" in row else "95% bootstrap CI")
        title = {"model": "samples", "data": "data's own " + ("Gen PPL" if "genppl" in row else "entropy"),
                 "random": "random tokens"}.get(name, name)
        if row.get("source"):
            title += f" ({row['source']})"
        sections.append((f"{title} — {spread}", _row_items(row)))
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
    if "nelbo" in res:
        n = res["nelbo"]
        sections.append((f"validation NELBO of the model ({n['split']} split, {n['tokens']} tokens, "
                         f"{'EMA' if n.get('ema') else 'raw'} weights)",
                         [("NLL bound (nats/token)", _fmt(n["nll"])), ("PPL bound", _fmt(n["ppl"])),
                          ("bits per token", _fmt(n["bpd"]))]))
    if "diversity" in res:
        d = res["diversity"]
        items = [(k, _fmt(v) if not isinstance(v, dict) else ", ".join(f"{b}: {c}" for b, c in v.items()))
                 for k, v in d.items()]
        sections.append(("diversity (whitespace words)", items))
    return sections


def _print(res: dict, out: Path) -> None:
    import sys

    sections = _lines(res)
    # the protocol and judge lines describe Gen PPL / entropy only; BLEU, ROUGE and diversity have no judge
    tail = [res[k] for k in ("protocol_line", "judge_label") if res.get(k)] + [f"results -> {out}"]
    for note in res.get("notes", []):
        typer.echo(f"note: {note}", err=True)
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
        for line in tail:
            console.print(line, markup=False, highlight=False)
        return
    for title, items in sections:
        typer.echo(f"[{title}]")
        for k, v in items:
            typer.echo(f"  {k}: {v}")
    for line in tail:
        typer.echo(line)


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


def default_results_path(paths: list[Path], run_dir: Optional[str], tag: str) -> Path:
    """``<run>/eval/<stem>.<tag>.json`` for a run's own ``samples/<stem>.jsonl``; any other input (or several)
    adds a hash of the inputs' absolute paths, so two files of the same name in different folders never write
    to the same results file. Without a run, the results go beside the (first) samples file."""
    first = Path(paths[0])
    base = Path(run_dir) / "eval" if run_dir else first.parent
    own = (run_dir is not None and len(paths) == 1 and first.suffix == ".jsonl"
           and first.resolve().parent == (Path(run_dir) / "samples").resolve())
    if own:
        return base / f"{first.stem}.{tag}.json"
    key = hashlib.sha256("\n".join(str(Path(p).resolve()) for p in paths).encode()).hexdigest()[:8]
    more = f"+{len(paths) - 1}" if len(paths) > 1 else ""
    return base / f"{first.stem}{more}-{key}.{tag}.json"


def _metric_tag(metric: str, metrics: list[str]) -> str:
    if metric.strip().lower() == "all":
        return "all"
    return "+".join(m for m in metrics if m != "entropy" or "genppl" not in metrics)


def _run_config(run_dir: Optional[str]):
    from elfctl.errors import ConfigError

    if not run_dir or not (Path(run_dir) / CONFIG_NAME).is_file():
        return None
    try:
        from elfctl.config import load_resolved

        return load_resolved(Path(run_dir) / CONFIG_NAME)
    except ConfigError as e:
        typer.echo(f"note: ignoring the run's config ({e})", err=True)
        return None


def evaluate(
    files: Optional[List[Path]] = typer.Argument(None, metavar="SAMPLES", show_default=False,
                                                 help="Samples file(s), same as --samples."),
    metric: str = typer.Option("genppl", "--metric", help="genppl, entropy, bleu, rouge, diversity, nelbo or all "
                                                          "(comma-separated). Gen PPL always shows entropy; all "
                                                          "skips BLEU/ROUGE when there are no references. nelbo: "
                                                          "the sampling model's validation NELBO (a perplexity "
                                                          "bound) on its held-out split, for families that have "
                                                          "one (mdlm)."),
    samples: Optional[List[Path]] = typer.Option(None, "--samples", help="Samples file: elfctl JSONL, a JSON "
                                                 "list of strings, or text (read by content). Several files (seeds "
                                                 "of one run and settings: mean ± std): repeat --samples, or list "
                                                 "them after it (--samples a.jsonl b.jsonl). Default: the newest "
                                                 "samples file of the newest run."),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="Average several files even when their headers "
                                     "do not show them to be seeds of one run and settings."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the newest samples file is looked for."),
    references: Optional[Path] = typer.Option(None, "--references", help="References for BLEU/ROUGE (default: "
                                              "the samples' 'reference' fields)."),
    judge: Optional[str] = _eval_option("--judge", default=f"Default: the run's eval.judge when it loads here, "
                                        f"else the offline judge {OFFLINE_JUDGE}."),
    device: Optional[str] = typer.Option(None, "--device", help="Where the judge runs: auto (the GPU when there "
                                         "is one, else the CPU), cpu, cuda or cuda:N (default: auto)."),
    judge_dtype: Optional[str] = _eval_option("--judge-dtype", " The authors score GPT-2 Large in bfloat16."),
    protocol: Optional[str] = _eval_option("--protocol"),
    reference_text: Optional[Path] = _eval_option("--reference-text"),
    baselines: bool = typer.Option(False, "--baselines", help="Also score the run's held-out data and random "
                                   "tokens, both through the model tokenizer's round trip."),
    batch_size: Optional[int] = _eval_option("--batch-size"),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Score at most this many samples "
                                              "(the first ones) of each file."),
    bootstrap: Optional[int] = _eval_option("--bootstrap"),
    out: Optional[Path] = typer.Option(None, "--out", help="Results JSON (default: <run>/eval/<samples-stem>"
                                       ".<metric>.json, with a hash of the inputs' paths unless the input is the "
                                       "run's own samples/<stem>.jsonl)."),
) -> None:
    """Score samples and print the results with the protocol hash and the judge label; writes a results JSON."""
    from elfctl.atomic import atomic_write_json
    from elfctl.errors import ConfigError
    from elfctl.eval.inputs import check_same_run, newest_samples, read_samples
    from elfctl.eval.report import parse_metrics, score_samples

    metrics = parse_metrics(metric)
    if max_samples is not None and max_samples < 1:
        raise ConfigError(f"--max-samples: {max_samples} is out of range; must be >= 1")
    given = {"judge": judge, "judge_dtype": judge_dtype, "protocol": protocol, "judge_batch_size": batch_size,
             "bootstrap": bootstrap, "reference_text": None if reference_text is None else str(reference_text)}
    eval_settings(None, given)  # bad flag values fail before any file is read
    for flag, path in (("--references", references), ("--reference-text", reference_text)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag}: {'is a directory, not a file' if path.is_dir() else 'file not found'}: "
                              f"{path}")
    if device is not None and ("genppl" in metrics):
        from elfctl.rundir.device import pick_device

        pick_device(device, what="--device")  # a bad or absent device fails before anything loads
    paths = [*(samples or []), *(files or [])] or [newest_samples(runs_dir)]
    loaded = [read_samples(p) for p in paths]
    if not allow_mixed:
        check_same_run(loaded)
    run_dir = loaded[0].header.get("run_dir")
    run_cfg = _run_config(run_dir)
    if "nelbo" in metrics:
        from elfctl.eval.likelihood import check_likelihood

        check_likelihood(loaded[0].header.get("family", run_cfg.model.family if run_cfg else "elf"))
    ev = eval_settings(run_cfg, given)
    needs_judge = "genppl" in metrics or "entropy" in metrics
    res = score_samples(loaded, metric, judge=judge or (_default_judge(run_cfg) if needs_judge else OFFLINE_JUDGE),
                        protocol=ev.protocol, judge_dtype=ev.judge_dtype, max_length=ev.max_judge_length,
                        batch_size=ev.judge_batch_size, bootstrap=ev.bootstrap, references=references,
                        reference_text=reference_text, run_cfg=run_cfg,
                        baselines=baselines, max_samples=max_samples, device=device)
    if len(loaded) > 1 and allow_mixed:
        res["notes"].append("--allow-mixed: the files were averaged without checking that they are seeds of one "
                            "run and settings")
    out = out or default_results_path(paths, run_dir, _metric_tag(metric, metrics))
    atomic_write_json(out, res)
    _print(res, out)
