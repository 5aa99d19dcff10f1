"""Reading samples to score: our JSONL, plain text, or a JSON list of strings.

* ``.jsonl`` with a ``{"type": "header"}`` first line (``elfctl sample``), or any JSONL whose objects have a
  ``text`` field;
* ``.json``: a list of strings;
* anything else: plain text. When the file has at least one blank line (a line of only whitespace) between
  non-blank lines, samples are separated by blank lines and each sample's lines are joined with one space;
  otherwise every non-blank line is one sample. Whitespace runs inside a sample become one space.

Samples whose text is empty are kept (diversity counts them); a file with no sample, or only empty ones, is an
error. Every error is a :class:`ConfigError` naming the file (exit 2, one line).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from elfctl.errors import ConfigError


@dataclass
class Samples:
    path: Path
    texts: list[str]
    header: dict = field(default_factory=dict)
    references: list[Optional[str]] = field(default_factory=list)


def _text(path: Path) -> str:
    from elfctl.data.text_sources import read_utf8

    if not path.is_file():
        raise ConfigError(f"samples file not found: {path}")
    return read_utf8(path)


def read_samples(path: Path) -> Samples:
    path = Path(path)
    text = _text(path)
    if not text.strip():
        raise ConfigError(f"{path}: empty file, no samples")
    if path.suffix == ".jsonl":
        header, texts, refs = {}, [], []
        from elfctl.data.text_sources import json_objects

        for i, obj in json_objects(path, text):
            if obj.get("type") == "header":
                header = obj
                continue
            if not isinstance(obj.get("text"), str):
                raise ConfigError(f"{path}:{i}: missing string field 'text'")
            texts.append(obj["text"])
            refs.append(obj.get("reference"))
        out = Samples(path, texts, header, refs)
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: malformed JSON at line {e.lineno} ({e.msg})") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ConfigError(f"{path}: a .json samples file must be a list of strings")
        out = Samples(path, data, {}, [None] * len(data))
    else:
        body = text.strip()
        parts = re.split(r"\n[ \t\r\f\v]*\n", body) if re.search(r"\n[ \t\r\f\v]*\n", body) else body.splitlines()
        texts = [" ".join(p.split()) for p in parts if p.strip()]
        out = Samples(path, texts, {}, [None] * len(texts))
    if not out.texts:
        raise ConfigError(f"{path}: no samples")
    if all(not t.strip() for t in out.texts):
        raise ConfigError(f"{path}: all {len(out.texts)} samples are empty")
    return out


def read_references(path: Path) -> list[str]:
    """References from a file: an ``elfctl sample`` JSONL's ``reference`` fields, or one text per sample."""
    s = read_samples(path)
    if Path(path).suffix == ".jsonl" and s.header and any(r is not None for r in s.references):
        return [r or "" for r in s.references]
    return s.texts


def check_pairs(hypotheses: list, references: list, hyp_source, ref_source) -> None:
    """Hypotheses and references must match one to one."""
    if len(hypotheses) != len(references):
        raise ConfigError(f"{ref_source}: {len(references)} references but {hyp_source} has {len(hypotheses)} "
                          f"hypotheses; they must match one to one")


def _run_time(run: Path) -> float:
    cfg = run / "config.yaml"
    return (cfg if cfg.is_file() else run).stat().st_mtime


def newest_samples(runs_dir: Path) -> Path:
    """The newest ``samples/*.jsonl`` of the newest run (by its config.yaml's time) that has samples."""
    runs = [r for r in Path(runs_dir).glob("*") if r.is_dir() and any((r / "samples").glob("*.jsonl"))]
    if not runs:
        raise ConfigError(f"no samples found under {Path(runs_dir).resolve()}/*/samples/ (run `elfctl sample` first, "
                          f"or pass --samples FILE)")
    run = max(runs, key=lambda r: (_run_time(r), r.name))
    return max((run / "samples").glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
