"""Report pages for a directory: a training run (its config, loss curve, latest samples and their scores with the
judge and protocol) or an ablation (its table with intervals, its plots embedded, a few samples per variant).

What a directory is, is read from what it holds: ``results.json`` with rows is an ablation
(:func:`elfctl.ablate.runner.run_ablation`); ``config.yaml``, ``metrics.jsonl`` or ``checkpoints/`` is a run.
Paths an ablation recorded are absolute; when the folder has moved, the file of the same name in its own
``samples/`` or ``eval/`` folder is used. A part that cannot be read (a torn file) becomes a note on the page.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Optional

from elfctl.errors import ConfigError
from elfctl.rundir.names import CONFIG_NAME
from elfctl.view.charts import line_chart
from elfctl.view.document import esc, page
from elfctl.view.trajectories import panel_settings

SAMPLES_SHOWN = 5       # samples listed for a run's latest file
SAMPLES_PER_VARIANT = 3


# --------------------------------------------------------------------------------------------- what is it
def is_ablation(path: Path) -> bool:
    f = path / "results.json"
    if not f.is_file():
        return False
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("rows"), list)


def is_run(path: Path) -> bool:
    return any((path / name).exists() for name in (CONFIG_NAME, "metrics.jsonl", "checkpoints"))


def report_html(path: Path) -> tuple[str, str]:
    """(page, what it is: 'run' or 'ablation') for a run or ablation directory; anything else: ConfigError."""
    path = Path(path)
    if is_ablation(path):
        return ablation_html(path), "ablation"
    if (path / "results.json").is_file():
        raise ConfigError(f"{path / 'results.json'}: not an ablation summary (no 'rows'); written by `elfctl "
                          f"ablate`?")
    if is_run(path):
        return run_html(path), "run"
    inside = sorted(p.name for p in path.iterdir() if p.is_dir() and (is_ablation(p) or is_run(p))) \
        if path.is_dir() else []
    hint = f"; it holds {', '.join(inside[:6])}{' ...' if len(inside) > 6 else ''}: view one of them" if inside else ""
    raise ConfigError(f"{path}: neither a run directory (config.yaml, metrics.jsonl, checkpoints/) nor an "
                      f"ablation directory (results.json){hint}")


# --------------------------------------------------------------------------------------------- helpers
def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def with_interval(v: Any, ci: Any, digits: int = 3) -> str:
    """``418.8 [388.7, 452.9]``: a score with its 95% interval, so a table answers "do these overlap?"."""
    text = _num(v, digits)
    if v is not None and isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float))
                                                                                 for x in ci):
        text += f" [{_num(float(ci[0]), digits)}, {_num(float(ci[1]), digits)}]"
    return text


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_samples_head(path: Path, n: int) -> tuple[Optional[dict], list[dict], int]:
    """(header, the first ``n`` sample records, samples in the file); lines after the n-th are counted, not
    parsed. A torn or foreign line ends the reading."""
    header, rows, count = None, [], 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                if header is None and count == 0 and '"header"' in line[:40]:
                    try:
                        header = json.loads(line)
                    except ValueError:
                        break
                    continue
                count += 1
                if len(rows) < n:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        break
                    if isinstance(row, dict):
                        rows.append(row)
    except OSError:
        pass
    if header is not None and header.get("num_samples"):
        count = int(header["num_samples"])
    return header, rows, count


def _sample_list(rows: list[dict]) -> str:
    items = []
    for r in rows:
        cond = f'<span class="tag">prompt</span>{esc(r["input"])}<br>' if r.get("input") is not None else ""
        items.append(f'<li value="{esc(r.get("index", 0))}">{cond}{esc(r.get("text", ""))}</li>')
    return f'<ol class="samples" start="0">{"".join(items)}</ol>' if items else '<p class="note">no samples</p>'


def _settings_line(header: Optional[dict]) -> str:
    if not header:
        return ""
    return '<div class="settings">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>"
                                                for k, v in panel_settings(header)) + "</div>"


def _data_uri_png(path: Path) -> Optional[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _local(root: Path, recorded: Optional[str], folder: str) -> Optional[Path]:
    """A path an ablation recorded, or the file of that name in ``root/folder`` when the recorded one is gone."""
    if not recorded:
        return None
    p = Path(recorded)
    if p.is_file():
        return p
    q = root / folder / p.name
    return q if q.is_file() else None


REPORT_CSS = """
.settings { font-size: 13px; color: var(--muted); margin: 4px 0 8px; }
.settings span { display: inline-block; margin-right: 12px; } .settings b { color: var(--fg); font-weight: 600; }
ol.samples li { margin: 0 0 6px; overflow-wrap: anywhere; }
.tag { display: inline-block; font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
       border: 1px solid var(--line); border-radius: 3px; padding: 0 4px; margin-right: 6px; }
.kv td:first-child { color: var(--muted); }
"""


# --------------------------------------------------------------------------------------------- scores
def _scores_html(res: dict, name: str) -> str:
    """One eval results file: its rows (with intervals or spread over seeds), overlap metrics, judge, protocol."""
    rows = []
    for key, row in (res.get("rows") or {}).items():
        if not isinstance(row, dict):
            continue
        label = {"model": "samples", "data": "real data", "random": "random tokens"}.get(key, key)
        for metric, title, digits in (("genppl", "Gen PPL", 1), ("entropy", "entropy (nats)", 3)):
            if metric in row:
                spread = row.get(f"{metric}_std_over_seeds")
                value = (f"{_num(row[metric], digits)} ± {_num(spread, digits)} over {row.get('seeds')} seeds"
                         if spread is not None else with_interval(row[metric], row.get(f"{metric}_ci95"), digits))
                rows.append((f"{label}: {title}", value))
    if "bleu" in res:
        rows.append(("BLEU", with_interval(res["bleu"], res.get("bleu_ci95"))))
    for k, v in (res.get("rouge") or {}).items():
        rows.append((k, with_interval(v, (res.get("rouge_ci95") or {}).get(k))))
    for k, v in (res.get("diversity") or {}).items():
        if not isinstance(v, dict):
            rows.append((f"diversity: {k}", _num(v)))
    table = "".join(f"<tr><td>{esc(k)}</td><td class=\"num\">{esc(v)}</td></tr>" for k, v in rows)
    tail = [res[k] for k in ("judge_label", "protocol_line") if res.get(k)]
    notes = "".join(f"<li>{esc(n)}</li>" for n in res.get("notes", []) if isinstance(n, str))
    return (f"<h3>{esc(name)}</h3><table class=\"kv\">{table}</table>"
            + "".join(f'<p class="note">{esc(t)}</p>' for t in tail)
            + (f"<ul class=\"note\">{notes}</ul>" if notes else ""))


def _evals_for(samples: Path, eval_dir: Path) -> list[tuple[Path, dict]]:
    """Eval results in ``eval_dir`` that scored ``samples`` (by the inputs they recorded, or by name)."""
    out = []
    if not eval_dir.is_dir():
        return out
    target = samples.resolve()
    for f in sorted(eval_dir.glob("*.json")):
        res = _read_json(f)
        if res is None:
            continue
        inputs = [Path(p) for p in res.get("inputs", []) if isinstance(p, str)]
        named = f.name.startswith(samples.stem + ".") or f.stem == samples.stem
        if any(p.resolve() == target or p.name == samples.name for p in inputs) or (named and not inputs):
            out.append((f, res))
    return out


# --------------------------------------------------------------------------------------------- a run
def _config_summary(text: str) -> list[tuple[str, str]]:
    import yaml

    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    if not isinstance(cfg, dict):
        return []
    picks = (("recipe", ("name",)), ("model", ("model", "preset")), ("width", ("model", "hidden_size")),
             ("depth", ("model", "depth")), ("predicts", ("model", "prediction")), ("encoder", ("encoder", "source")),
             ("data", ("data", "dataset")), ("task", ("data", "task")), ("length", ("data", "max_length")),
             ("train steps", ("train", "steps")), ("batch", ("train", "batch_size")), ("lr", ("optim", "lr")),
             ("optimizer", ("optim", "optimizer")))
    out = []
    for label, keys in picks:
        v: Any = cfg
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            out.append((label, str(v)))
    return out


def run_html(run: Path) -> str:
    from elfctl.train.loggers import read_metrics

    parts = [f"<h1>run {esc(run.name)}</h1><p class=\"sub\">{esc(run.resolve())}</p>"]
    cfg_file = run / CONFIG_NAME
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step_*") if p.is_dir()) \
        if (run / "checkpoints").is_dir() else []
    parts.append("<h2>Config</h2>")
    if cfg_file.is_file():
        text = cfg_file.read_text(encoding="utf-8", errors="replace")
        summary = _config_summary(text)
        if ckpts:
            summary.append(("checkpoints", f"{len(ckpts)} (latest {ckpts[-1]})"))
        parts.append('<div class="settings">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>"
                                                        for k, v in summary) + "</div>")
        parts.append(f"<details><summary>config.yaml</summary><pre>{esc(text)}</pre></details>")
    else:
        parts.append('<p class="note">no config.yaml (training has not started here)</p>')

    parts.append("<h2>Training loss</h2>")
    metrics = read_metrics(run)
    rows = [m for m in metrics if isinstance(m, dict) and isinstance(m.get("step"), (int, float))]
    series = {k: [(m["step"], m[k]) for m in rows if isinstance(m.get(k), (int, float))] for k in ("loss", "ce", "l2")}
    series = {k: v for k, v in series.items() if v}
    if series:
        parts.append(line_chart(series, xlabel="step", ylabel="training loss"))
        last = rows[-1]
        parts.append('<p class="note">last logged: ' + esc(", ".join(
            f"{k} {_num(last[k], 4) if isinstance(last[k], float) else last[k]}" for k in
            ("step", "loss", "ce", "l2", "lr", "tokens_per_s") if k in last)) + "</p>")
    else:
        parts.append('<p class="note">no metrics.jsonl rows yet</p>')

    parts.append("<h2>Samples</h2>")
    files = sorted((p for p in (run / "samples").glob("*.jsonl")), key=lambda p: (p.stat().st_mtime, p.name)) \
        if (run / "samples").is_dir() else []
    if not files:
        parts.append(f'<p class="note">no samples yet: <code>elfctl sample --run {esc(run)}</code></p>')
    else:
        latest = files[-1]
        header, head, count = read_samples_head(latest, SAMPLES_SHOWN)
        has_traj = any(r.get("trajectory") for r in head)
        parts.append(f"<h3>latest: {esc(latest.name)} ({count} samples)</h3>{_settings_line(header)}"
                     + _sample_list(head)
                     + (f'<p class="note">{len(head)} of {count} shown.</p>' if count > len(head) else "")
                     + (f'<p class="note">has trajectories: <code>elfctl view {esc(latest)}</code> animates '
                        f'them.</p>' if has_traj else ""))
        evals = _evals_for(latest, run / "eval")
        parts.append("<h2>Scores of the latest samples</h2>")
        if evals:
            parts += [_scores_html(res, f.name) for f, res in evals]
        else:
            parts.append(f'<p class="note">not scored yet: <code>elfctl eval --samples {esc(latest)} --metric '
                         f'genppl</code></p>')
        if len(files) > 1:
            items = "".join(f"<li>{esc(p.name)}</li>" for p in reversed(files[:-1]))
            parts.append(f"<details><summary>{len(files) - 1} older samples files</summary><ul>{items}</ul>"
                         f"</details>")
    return page(f"run {run.name}", "".join(parts), css=REPORT_CSS)


# --------------------------------------------------------------------------------------------- an ablation
def _overrides(v: Any) -> str:
    return ", ".join(str(x) for x in v) if isinstance(v, list) and v else "–"


def ablation_html(root: Path) -> str:
    summary = json.loads((root / "results.json").read_text(encoding="utf-8"))
    rows = [r for r in summary["rows"] if isinstance(r, dict)]
    name = summary.get("ablation", root.name)
    parts = [f"<h1>ablation {esc(name)} ({esc(summary.get('scale', '?'))})</h1>"
             f"<p class=\"sub\">{esc(root.resolve())}</p><table class=\"kv\">"]
    for label, key in (("what it varies", "description"), ("the finding it tests", "finding"),
                       ("recipe", "recipe"), ("swept setting", "plot_x")):
        if summary.get(key):
            parts.append(f"<tr><td>{esc(label)}</td><td>{esc(summary[key])}</td></tr>")
    parts.append("</table>")

    x_key = summary.get("plot_x")
    extra = [k for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu") if any(k in r for r in rows)]
    series = len({r.get("series", "model") for r in rows}) > 1
    head = (["variant"] + (["series"] if series else []) + ([x_key] if x_key else [])
            + ["train overrides", "sample overrides", "step", "train loss", "Gen PPL [95% CI]",
               "entropy [95% CI]"] + extra)
    body = []
    for r in rows:  # (text, is a number)
        cells = [(r.get("variant"), False)] + ([(r.get("series", "model"), False)] if series else [])
        if x_key:
            x = r.get("x")
            cells.append((f"{x:g}" if isinstance(x, (int, float)) else _num(x), True))
        cells += [(_overrides(r.get("train")), False), (_overrides(r.get("sample")), False),
                  (_num(r.get("step")), True), (_num(r.get("train_loss"), 4), True),
                  (with_interval(r.get("genppl"), r.get("genppl_ci95"), 1), True),
                  (with_interval(r.get("entropy"), r.get("entropy_ci95"), 3), True)]
        cells += [(_num(r.get(k), 2), True) for k in extra]
        body.append("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if num else f"<td>{esc(c)}</td>"
                                     for c, num in cells) + "</tr>")
    parts.append("<h2>Results</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                 + "".join(body) + "</table>")
    judges = sorted({str(r["judge"]) for r in rows if r.get("judge")})
    protocols = sorted({str(r["protocol_hash"]) for r in rows if r.get("protocol_hash")})
    if judges or protocols:
        parts.append(f'<p class="note">Gen PPL judged by {esc(", ".join(judges) or "?")} under protocol '
                     f'{esc(", ".join(protocols) or "?")}; compare these numbers with each other only (never with '
                     f'figures from another judge). Intervals: 95% bootstrap over samples.</p>')
    reused = [r for r in rows if r.get("reused_run")]
    if reused:
        parts.append('<p class="note">' + esc("; ".join(f"{r['variant']} reused the finished run {r['reused_run']}"
                                                       for r in reused)) + "</p>")

    parts.append("<h2>Plots</h2>")
    names = [Path(p).name for p in summary.get("plots", []) if isinstance(p, str)]
    names += sorted(p.name for p in root.glob("*.png") if p.name not in names)
    shown = 0
    for n in names:
        uri = _data_uri_png(root / n)
        if uri:
            parts.append(f'<figure style="display:inline-block;margin:0"><img class="plot" alt="{esc(n)}" '
                         f'src="{uri}"><figcaption class="note">{esc(n)}</figcaption></figure>')
            shown += 1
    if not shown:
        parts.append('<p class="note">no plots (matplotlib is needed to draw them: pip install '
                     '\'elfctl[plots]\')</p>')

    parts.append("<h2>Samples per variant</h2>")
    for r in rows:
        samples = _local(root, r.get("samples"), "samples")
        parts.append(f"<h3>{esc(r.get('variant'))}</h3>")
        if samples is None:
            parts.append(f'<p class="note">samples file not found ({esc(r.get("samples") or "none recorded")})</p>')
            continue
        header, head_rows, count = read_samples_head(samples, SAMPLES_PER_VARIANT)
        parts.append(_settings_line(header) + _sample_list(head_rows)
                     + f'<p class="note">{len(head_rows)} of {count} from {esc(samples.name)}</p>')
    return page(f"ablation {name}", "".join(parts), css=REPORT_CSS)
