"""The embedded offline datasets, built once from registry-carried text into ``<cache>/datasets/<name>/``.

* ``builtin:wiki-leads`` — 10,033 Wikipedia lead sections (CC BY-SA 4.0), unconditional ``{"text"}`` records.
* ``builtin:news-summ``  — 3,824 news articles (2017) as XSum-style pairs: ``input`` = the article without its
  first sentence, ``output`` = that first (lead) sentence.

Splits are fixed by ``data.split_seed`` and ``data.val_fraction`` and written atomically into
``<cache>/datasets/<name>/seed<S>-val<F>/{train,validation}.jsonl`` (the folder name carries the split parameters,
so two recipes with different splits never share or overwrite one another's files); later runs reuse them.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import zipfile
from pathlib import Path
from typing import Optional

from elfctl.atomic import atomic_write_jsonl
from elfctl.data.assets import cache_root, resolve_asset
from elfctl.errors import ConfigError

BUILTIN_DATASETS = ("wiki-leads", "news-summ")
_SENT_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’]))\s+(?=[A-Z“\"'])")


def _wiki_records(data_dir) -> list[dict]:
    raw = json.loads(resolve_asset("builtin:wiki-leads-raw", data_dir=data_dir).read_text(encoding="utf-8"))
    out, seen = [], set()
    for entry in raw.values():
        text = " ".join(str(entry.get("extract", "")).split()) if isinstance(entry, dict) else ""
        if len(text.split()) >= 8 and text not in seen:  # junk: empty, stubs, duplicates
            seen.add(text)
            out.append({"text": text})
    return out


def _news_records(data_dir) -> list[dict]:
    with zipfile.ZipFile(resolve_asset("builtin:news-raw", data_dir=data_dir)) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv"))
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open(name), encoding="utf-8")))
    out, seen = [], set()
    for row in rows:
        text = " ".join((row.get("text") or "").split())
        parts = _SENT_END.split(text, maxsplit=1)
        # junk: no sentence boundary, a lead too short to summarise anything, an article too short, duplicates
        if len(parts) == 2 and len(parts[0].split()) >= 6 and len(parts[1].split()) >= 30 and parts[0] not in seen:
            seen.add(parts[0])
            out.append({"input": parts[1], "output": parts[0]})
    return out


BUILDERS = {"wiki-leads": _wiki_records, "news-summ": _news_records}


def builtin_split_files(name: str, *, data_dir: Optional[str], split_seed: int, val_fraction: float) -> dict[str, Path]:
    """Build (once) and return {'train': path, 'validation': path} for a built-in dataset."""
    if name not in BUILDERS:
        raise ConfigError(f"data.dataset: unknown built-in 'builtin:{name}'; valid: "
                          + ", ".join(f"builtin:{n}" for n in BUILTIN_DATASETS))
    folder = cache_root(data_dir) / "datasets" / name / f"seed{split_seed}-val{val_fraction:g}"
    files = {"train": folder / "train.jsonl", "validation": folder / "validation.jsonl"}
    if all(p.is_file() for p in files.values()):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    records = BUILDERS[name](data_dir)
    if not records:
        raise ConfigError(f"data.dataset: builtin:{name} gave no examples (its source file is empty or unreadable)")
    random.Random(split_seed).shuffle(records)
    n_val = max(1, int(round(len(records) * val_fraction)))
    atomic_write_jsonl(files["validation"], records[:n_val])
    atomic_write_jsonl(files["train"], records[n_val:])
    return files
