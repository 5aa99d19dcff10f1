"""Reading examples from users' files, built-in sets and the Hugging Face hub, with clear errors.

Local files: JSONL (one object per line: ``{"text": ...}`` or ``{"input": ..., "output": ...}``; field names from
``data.*_field``) or plain text: when the file has blank lines, each blank-line separated paragraph is one example
(its lines joined with spaces); otherwise each non-empty line is one example. A single file is split into
train/validation by ``data.split_seed`` / ``data.val_fraction``. A directory holds ``train.*`` and
``validation.*`` (also ``valid``/``val``/``dev``) files; without a validation file it is held out of train.
Hub ids go through HF ``datasets`` (local-only when the hub is unreachable: one-line error, no retries).

Every bad input is a one-line ConfigError naming the file and line (or byte offset): empty file, malformed JSON,
a missing field (with the fields present), a non-string value, bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from elfctl.data.assets import is_hub_id
from elfctl.data.builtin import builtin_split_files
from elfctl.errors import ConfigError
from elfctl.optional import require


def read_utf8(path: Path) -> str:
    """A file's text; bytes that are not UTF-8 are a one-line ConfigError with their offset and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 (byte offset {e.start}, line {line})") from None


def json_object(path: Path, i: int, line: str) -> dict:
    """Line ``i`` of a JSONL file as a JSON object; anything else is a one-line ConfigError naming the line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{i}: malformed JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
    return obj


def record_fields(path: Path, i: int, obj: dict, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The string values of ``fields`` in record ``i``; a missing or non-string field is a one-line ConfigError."""
    missing = [f for f in fields if f not in obj]
    if missing:
        raise ConfigError(f"{path}:{i}: missing field '{missing[0]}' (fields present: {', '.join(obj) or 'none'})")
    bad = [f for f in fields if not isinstance(obj[f], str)]
    if bad:
        raise ConfigError(f"{path}:{i}: field '{bad[0]}' must be a string, got {type(obj[bad[0]]).__name__}")
    return tuple(obj[f] for f in fields)


def json_objects(path: Path, text: str):
    """(line number, object) for each non-blank line of a JSONL text; anything but a JSON object is a ConfigError."""
    # split on \n only: JSON strings may hold U+2028 and friends, which str.splitlines would break on
    for i, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield i, json_object(path, i, line)


def read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    out = []
    for i, obj in json_objects(path, read_utf8(path)):
        out.append(dict(zip(fields, record_fields(path, i, obj, fields))))
    if not out:
        raise ConfigError(f"{path}: no examples (the file is empty)")
    return out


def read_plain(path: Path) -> list[dict]:
    text = read_utf8(path)
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


# Formats that look like data but are not read: refused by name instead of being read as lines of text.
TABULAR = (".csv", ".tsv", ".parquet", ".arrow", ".feather", ".xlsx", ".xls")
# Extensions that mark a data.dataset string as a local file even when it does not exist (never a hub id).
FILE_SUFFIXES = (".jsonl", ".json", ".txt", ".text", ".md", ".gz", ".zip", ".bz2", ".xz", *TABULAR)


def _read_file(path: Path, data_cfg) -> list[dict]:
    if path.suffix.lower() in TABULAR:
        fields = " and ".join(f"'{f}'" for f in _fields(data_cfg))
        raise ConfigError(f"data.dataset: {path}: {path.suffix} files are not read; export it to JSONL (one object "
                          f"per line with {fields}) or plain text (.txt)")
    if path.suffix.lower() in (".jsonl", ".json"):
        return _normalise(read_jsonl(path, _fields(data_cfg)), data_cfg)
    if data_cfg.task == "conditional":
        raise ConfigError(f"{path}: conditional data needs JSONL with '{data_cfg.input_field}' and "
                          f"'{data_cfg.output_field}' fields")
    return read_plain(path)


def _which(split: str, data_cfg) -> str:
    """'train' or 'validation' for a source that has only those two splits."""
    if split in (data_cfg.eval_split, "validation"):
        return "validation"
    if split in (data_cfg.train_split, "train"):
        return "train"
    raise ConfigError(f"split '{split}': {data_cfg.dataset} has only the splits {data_cfg.train_split} and "
                      f"{data_cfg.eval_split}")


def _split_list(records: list[dict], split: str, data_cfg) -> list[dict]:
    import random

    split = _which(split, data_cfg)
    records = list(records)
    random.Random(data_cfg.split_seed).shuffle(records)
    # val_fraction 0 means "train on everything"; any positive fraction holds out at least one example
    frac = data_cfg.val_fraction
    n_val = max(1, int(round(len(records) * frac))) if frac > 0 and len(records) > 1 else 0
    return records[:n_val] if split == "validation" else records[n_val:]


_ALIASES = {"validation": ("validation", "valid", "val", "dev"), "train": ("train",)}


def _split_file(folder: Path, name: str) -> Optional[Path]:
    for stem in _ALIASES.get(name, (name,)):
        for ext in (".jsonl", ".json", ".txt"):
            f = folder / f"{stem}{ext}"
            if f.is_file():
                return f
    return None


def dir_split_file(path: Path, split: str, data_cfg) -> tuple[Path, Optional[str]]:
    """The file of a directory dataset that holds ``split``, and ``"validation"`` when the split has to be held
    out of the train file (the directory has no validation file), else None."""
    f = _split_file(path, split)
    if f is None and split in (data_cfg.eval_split, data_cfg.train_split):
        f = _split_file(path, "validation" if split == data_cfg.eval_split else "train")
    if f is not None:
        return f, None
    train = _split_file(path, "train")
    if train is not None and split in (data_cfg.eval_split, "validation"):
        return train, "validation"
    raise ConfigError(f"data.dataset: {path} has no {split}.jsonl / {split}.txt")


def load_records(data_cfg, split: str, data_dir: Optional[str] = None, limit: Optional[int] = None) -> list[dict]:
    """Examples of one split as dicts with 'text' (unconditional) or 'input'/'output' (conditional).

    ``limit`` is a hint: a hub dataset then materialises only its first ``limit`` rows (local files are read whole).
    """
    source = data_cfg.dataset
    if source.startswith("builtin:"):
        files = builtin_split_files(source[len("builtin:"):], data_dir=data_dir or data_cfg.data_dir,
                                    split_seed=data_cfg.split_seed, val_fraction=data_cfg.val_fraction)
        which = _which(split, data_cfg)
        # built-in files already use the normalised field names
        return read_jsonl(files[which], ("input", "output") if data_cfg.task == "conditional" else ("text",))
    path = Path(source).expanduser()
    if path.is_dir():
        f, held_out = dir_split_file(path, split, data_cfg)
        records = _read_file(f, data_cfg)
        return _split_list(records, held_out, data_cfg) if held_out else records
    if path.is_file():
        return _split_list(_read_file(path, data_cfg), split, data_cfg)
    if not is_hub_id(source) or _looks_local(source):
        raise ConfigError(f"data.dataset: file or directory not found: {source} (looked at {path.resolve()}; a local "
                          f"dataset is a .jsonl, .json or .txt file or a folder of them, a hub dataset is owner/name)")
    return _load_hub(source, split, data_cfg, limit)


def _looks_local(source: str) -> bool:
    """A path that does not exist rather than a hub id: a file extension (data/my.csv), more than one '/', or a
    first component that is a local folder."""
    parts = source.split("/")
    return (Path(source).suffix.lower() in FILE_SUFFIXES or len(parts) > 2
            or (len(parts) > 1 and Path(parts[0]).expanduser().is_dir()))


def _load_hub(source: str, split: str, data_cfg, limit: Optional[int] = None) -> list[dict]:
    from elfctl.data.assets import force_offline, hub_reachable

    if not hub_reachable():
        force_offline()
    load_dataset = require("datasets", f"data.dataset '{source}' (a hub dataset)").load_dataset
    try:
        ds = load_dataset(source, data_cfg.hub_config, split=split)
    except Exception as e:  # noqa: BLE001 - offline, missing split, missing config: all one line
        raise ConfigError(f"data.dataset: hub dataset '{source}' ({data_cfg.hub_config or 'default'}, split {split}) "
                          f"is not available here ({type(e).__name__}); download it where the hub is reachable (or "
                          f"export it to JSONL) and "
                          f"set data.dataset to a local JSONL file or directory") from None
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))  # materialise only what will be used
    fields = _fields(data_cfg)
    records = []
    for i, row in enumerate(ds):
        if "translation" in row and data_cfg.task == "conditional":  # wmt-style rows
            row = {**row, **row["translation"]}
        missing = [f for f in fields if not isinstance(row.get(f), str)]
        if missing:
            raise ConfigError(f"data.dataset: hub dataset '{source}' row {i}: no text field '{missing[0]}' (fields "
                              f"present: {', '.join(row)}); set data.{'text' if len(fields) == 1 else 'input/output'}"
                              f"_field")
        records.append({f: row[f] for f in fields})
    return _normalise(records, data_cfg)
