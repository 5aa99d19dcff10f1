"""Reading samples to score: our JSONL, plain text, or a JSON list of strings.

* ``.jsonl`` with a ``{"type": "header"}`` first line (``elfctl sample``), or any JSONL whose objects have a
  ``text`` field;
* ``.json``: a list of strings;
* anything else: plain text — blank-line separated samples when the file has blank lines, else one per line.
"""

from __future__ import annotations

import json
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
    if not path.is_file():
        raise ConfigError(f"samples file not found: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start}, line {line})") from None


def read_samples(path: Path) -> Samples:
    path = Path(path)
    text = _text(path)
    if not text.strip():
        raise ConfigError(f"{path}: empty file, no samples")
    if path.suffix == ".jsonl":
        header, texts, refs = {}, [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{i}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{path}:{i}: expected a JSON object")
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
        parts = text.split("\n\n") if "\n\n" in text.strip() else text.splitlines()
        texts = [" ".join(p.split()) for p in parts if p.strip()]
        out = Samples(path, texts, {}, [None] * len(texts))
    if not out.texts:
        raise ConfigError(f"{path}: no samples")
    if all(not t.strip() for t in out.texts):
        raise ConfigError(f"{path}: all {len(out.texts)} samples are empty")
    return out


def read_references(path: Path) -> list[str]:
    s = read_samples(path)
    if Path(path).suffix == ".jsonl" and any(r is not None for r in s.references) and s.header:
        return [r or "" for r in s.references]
    return s.texts


def newest_samples(runs_dir: Path) -> Path:
    files = sorted(Path(runs_dir).glob("*/samples/*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ConfigError(f"no samples found under {Path(runs_dir).resolve()}/*/samples/ (run `elfctl sample` first, "
                          f"or pass --samples FILE)")
    return files[-1]
