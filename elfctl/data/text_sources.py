"""Reading examples from users' files, built-in sets and the Hugging Face hub, with clear errors.

Local files: JSONL (one object per line: ``{"text": ...}`` or ``{"input": ..., "output": ...}``; field names from
``data.*_field``) or plain text (blank-line separated paragraphs when the file has blank lines, otherwise one
example per line). A directory holds ``train.*`` / ``validation.*`` files. Hub ids go through HF ``datasets``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from elfctl.data.assets import is_hub_id
from elfctl.data.builtin import builtin_split_files
from elfctl.errors import ConfigError


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start}, line {line})") from None


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    text = _read_text(path)
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i}: malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
        missing = [f for f in fields if f not in obj]
        if missing:
            raise ConfigError(f"{path}:{i}: missing field '{missing[0]}' (fields present: {', '.join(obj) or 'none'})")
        if not all(isinstance(obj[f], str) for f in fields):
            raise ConfigError(f"{path}:{i}: field(s) {', '.join(fields)} must be strings")
        out.append({f: obj[f] for f in fields})
    if not out:
        raise ConfigError(f"{path}: no examples (the file is empty)")
    return out


def read_plain(path: Path) -> list[dict]:
    text = _read_text(path)
    if "\n\n" in text.strip():
        parts = [" ".join(p.split()) for p in text.split("\n\n")]
    else:
        parts = [line.strip() for line in text.splitlines()]
    out = [{"text": p} for p in parts if p]
    if not out:
        raise ConfigError(f"{path}: no examples (the file is empty)")
    return out


def _fields(data_cfg) -> tuple[str, ...]:
    return ((data_cfg.input_field, data_cfg.output_field) if data_cfg.task == "conditional"
            else (data_cfg.text_field,))


def _normalise(records: list[dict], data_cfg) -> list[dict]:
    if data_cfg.task == "conditional":
        return [{"input": r[data_cfg.input_field], "output": r[data_cfg.output_field]} for r in records]
    return [{"text": r[data_cfg.text_field]} for r in records]


def _read_file(path: Path, data_cfg) -> list[dict]:
    if path.suffix in (".jsonl", ".json"):
        return _normalise(read_jsonl(path, _fields(data_cfg)), data_cfg)
    if data_cfg.task == "conditional":
        raise ConfigError(f"{path}: conditional data needs JSONL with '{data_cfg.input_field}' and "
                          f"'{data_cfg.output_field}' fields")
    return read_plain(path)


def _split_list(records: list[dict], split: str, data_cfg) -> list[dict]:
    import random

    records = list(records)
    random.Random(data_cfg.split_seed).shuffle(records)
    n_val = max(1, int(round(len(records) * data_cfg.val_fraction))) if len(records) > 1 else 0
    return records[:n_val] if split == data_cfg.eval_split else records[n_val:]


def load_records(data_cfg, split: str, data_dir: Optional[str] = None) -> list[dict]:
    """Examples of one split as dicts with 'text' (unconditional) or 'input'/'output' (conditional)."""
    source = data_cfg.dataset
    if source.startswith("builtin:"):
        files = builtin_split_files(source[len("builtin:"):], data_dir=data_dir or data_cfg.data_dir,
                                    split_seed=data_cfg.split_seed, val_fraction=data_cfg.val_fraction)
        which = "validation" if split == data_cfg.eval_split else "train"
        # built-in files already use the normalised field names
        return read_jsonl(files[which], ("input", "output") if data_cfg.task == "conditional" else ("text",))
    path = Path(source).expanduser()
    if path.is_dir():
        for ext in (".jsonl", ".json", ".txt"):
            f = path / f"{split}{ext}"
            if f.is_file():
                return _read_file(f, data_cfg)
        raise ConfigError(f"data.dataset: {path} has no {split}.jsonl / {split}.txt")
    if path.is_file():
        return _split_list(_read_file(path, data_cfg), split, data_cfg)
    if not is_hub_id(source) or source.endswith((".jsonl", ".txt", ".json")):
        raise ConfigError(f"data.dataset: file or directory not found: {source}")
    return _load_hub(source, split, data_cfg)


def _load_hub(source: str, split: str, data_cfg) -> list[dict]:
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        from datasets import load_dataset

        ds = load_dataset(source, data_cfg.hub_config, split=split)
    except Exception as e:  # noqa: BLE001 - offline, missing split, missing config: all one line
        raise ConfigError(f"data.dataset: hub dataset '{source}' ({data_cfg.hub_config or 'default'}, split {split}) "
                          f"is not available here ({type(e).__name__}); download it where the hub is reachable and "
                          f"set data.dataset to a local JSONL file or directory") from None
    fields = _fields(data_cfg)
    records = []
    for row in ds:
        if "translation" in row and data_cfg.task == "conditional":  # wmt-style rows
            row = {**row, **row["translation"]}
        records.append({f: row[f] for f in fields})
    return _normalise(records, data_cfg)
