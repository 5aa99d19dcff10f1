"""A training split's raw records, read without holding the corpus in RAM.

Local files are streamed line by line with the rules and one-line errors of :mod:`elfctl.data.text_sources`
(JSONL objects; plain text as blank-line separated paragraphs when the file has a blank line, else one example
per line; bytes that are not UTF-8 name their offset and line), in file order; a single file's train/validation
split is the same permutation as ``text_sources`` draws (``random.Random(split_seed)`` over the record count),
applied as an index selection (:func:`split_indices`). Hub ids and ``save_to_disk`` folders are already Arrow:
they are opened memory-mapped.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Optional

from elfctl.data.text_sources import json_object, record_fields
from elfctl.errors import ConfigError
from elfctl.optional import require

def _segments(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each b'\\n'-separated segment of a file, decoded as UTF-8 one line at a time.

    A multi-byte UTF-8 character never contains the byte 0x0A, so decoding per line finds the same first bad
    byte (offset and line) as decoding the whole file.
    """
    offset = 0
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            seg = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                yield i, seg.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ConfigError(f"{path}: not UTF-8 (byte offset {offset + e.start}, line {i})") from None
            offset += len(raw)


def _jsonl_records(path: Path, fields: tuple[str, ...]) -> Iterator[tuple]:
    for i, line in _segments(path):
        if line.strip():  # the same per-record rules and messages as the in-memory reader
            yield record_fields(path, i, json_object(path, i, line), fields)


def _has_paragraphs(path: Path) -> bool:
    """Whether the stripped text contains '\\n\\n': an empty line with non-space text before and after it."""
    seen_text = gap = False
    for _, seg in _segments(path):
        if seg == "":
            gap = gap or seen_text
        elif not seg.isspace():
            if gap:
                return True
            seen_text = True
    return False


def _plain_records(path: Path) -> Iterator[tuple]:
    if _has_paragraphs(path):
        words: list[str] = []
        for _, seg in _segments(path):
            if seg == "":  # a '\n\n' boundary
                if words:
                    yield (" ".join(words),)
                words = []
            else:
                words += seg.split()
        if words:
            yield (" ".join(words),)
    else:
        for _, seg in _segments(path):
            for part in seg.splitlines():
                if part.strip():
                    yield (part.strip(),)


def file_records(path: Path, data_cfg) -> Iterator[tuple]:
    """Records of one local file as tuples of the normalised fields ('text',) or ('input', 'output')."""
    if path.suffix in (".jsonl", ".json"):
        fields = ((data_cfg.input_field, data_cfg.output_field) if data_cfg.task == "conditional"
                  else (data_cfg.text_field,))
        return _jsonl_records(path, fields)
    if data_cfg.task == "conditional":
        raise ConfigError(f"{path}: conditional data needs JSONL with '{data_cfg.input_field}' and "
                          f"'{data_cfg.output_field}' fields")
    return _plain_records(path)


def normalised_fields(data_cfg) -> tuple[str, ...]:
    return ("input", "output") if data_cfg.task == "conditional" else ("text",)


def split_indices(n: int, which: str, data_cfg):
    """Indices of a single source's 'train' or 'validation' part, in the order ``text_sources`` yields them."""
    import numpy as np

    order = list(range(n))
    random.Random(data_cfg.split_seed).shuffle(order)  # the same swaps as shuffling the records themselves
    frac = data_cfg.val_fraction
    n_val = max(1, int(round(n * frac))) if frac > 0 and n > 1 else 0
    picked = order[:n_val] if which == "validation" else order[n_val:]
    return np.asarray(picked, dtype=np.int64)


def local_source(data_cfg, split: str, data_dir: Optional[str]) -> tuple[Path, Optional[str]]:
    """(file, part) for a local or built-in source: part is None (the whole file, in order) or 'train' /
    'validation' (a held-out split of one file), following ``text_sources.load_records``."""
    from elfctl.data.builtin import builtin_split_files
    from elfctl.data.text_sources import _which, dir_split_file

    source = data_cfg.dataset
    if source.startswith("builtin:"):
        files = builtin_split_files(source[len("builtin:"):], data_dir=data_dir or data_cfg.data_dir,
                                    split_seed=data_cfg.split_seed, val_fraction=data_cfg.val_fraction)
        return files[_which(split, data_cfg)], None
    path = Path(source).expanduser()
    if path.is_dir():
        return dir_split_file(path, split, data_cfg)
    if path.is_file():
        return path, _which(split, data_cfg)
    raise ConfigError(f"data.dataset: file or directory not found: {source}")


def is_saved_dataset(path: Path) -> bool:
    """A folder written by HF ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def pick_split(ds, split: str, what: str):
    """One split of a DatasetDict (train/validation aliases as for local folders); a Dataset is itself."""
    from datasets import DatasetDict

    if not isinstance(ds, DatasetDict):
        return ds
    aliases = {"validation": ("validation", "valid", "val", "dev", "test"), "train": ("train",)}
    for name in (split, *aliases.get(split, ())):
        if name in ds:
            return ds[name]
    raise ConfigError(f"{what}: no split '{split}' (splits present: {', '.join(ds)})")


def load_saved(path: Path, split: str, what: str):
    """A ``save_to_disk`` folder, memory-mapped; one line when it cannot be read."""
    load_from_disk = require("datasets", f"{what} ({path}, a save_to_disk folder)").load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - a torn or foreign folder: one line
        raise ConfigError(f"{what}: cannot read the save_to_disk folder {path} ({type(e).__name__}: {e})") from None
    return pick_split(ds, split, what)


def load_hub(source: str, split: str, data_cfg):
    """A hub dataset split as a memory-mapped HF Dataset (local HF cache only when the hub is unreachable)."""
    from elfctl.data.assets import force_offline, hub_reachable

    if not hub_reachable():
        force_offline()
    load_dataset = require("datasets", f"data.dataset '{source}' (a hub dataset)").load_dataset
    try:
        return load_dataset(source, data_cfg.hub_config, split=split)
    except Exception as e:  # noqa: BLE001 - offline, missing split, missing config: all one line
        raise ConfigError(f"data.dataset: hub dataset '{source}' ({data_cfg.hub_config or 'default'}, split {split}) "
                          f"is not available here ({type(e).__name__}); download it where the hub is reachable (or "
                          f"export it to JSONL) and set data.dataset to a local JSONL file or directory") from None
