"""Training sets released already tokenized: the ELF authors' hub repos and local ``save_to_disk`` folders.

``data.pretokenized`` names a hub dataset repo (``embedded-language-flows/openwebtext-t5``,
``…/xsum_train_t5``, ``…/wmt14_de-en_train_t5``) or a local folder (a ``save_to_disk`` folder, or a folder of
Arrow/Parquet files such as a downloaded snapshot of the repo). Rows hold ``input_ids`` (and
``condition_input_ids`` for conditional tasks) in the vocabulary of ``encoder.tokenizer`` (t5-small for the
authors' sets). They are read memory-mapped, as the authors' loader reads them: one row is one example,
``condition_input_ids[:max_input_length] + input_ids`` cut to ``max_length`` and padded; with ``data.packing``
the stored ids are concatenated as they are (no eos added) and cut into full windows.

Some of the authors' repos are stored in ``save_to_disk`` format, which ``load_dataset`` reads as one row of
metadata: such a repo is fetched as a snapshot and opened with ``load_from_disk``, as their loader does.
Without the hub, a repo not in the local HF cache fails at once with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from elfctl.data import text_stream as ts
from elfctl.data.tokenized import TokenizedDataset
from elfctl.errors import ConfigError
from elfctl.optional import require

WHAT = "data.pretokenized"


def _looks_like_saved_metadata(ds) -> bool:
    """A save_to_disk folder pushed to the hub loads as one row whose columns all start with '_'."""
    return len(ds) == 1 and all(c.startswith("_") for c in ds.column_names)


def _from_hub(repo: str, split: str):
    from elfctl.data.assets import force_offline, hub_reachable

    online = hub_reachable()
    if not online:
        force_offline()
    ds, first = None, None
    load_dataset = require("datasets", f"{WHAT} (a hub dataset)").load_dataset
    try:
        ds = ts.pick_split(load_dataset(repo), split, WHAT)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - may be a save_to_disk repo: try the snapshot below
        first = e
    if ds is None or _looks_like_saved_metadata(ds):
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(repo_id=repo, repo_type="dataset", local_files_only=not online)
        except Exception as e:  # noqa: BLE001 - offline and not cached, or no such repo: one line
            why = type(first or e).__name__
            raise ConfigError(f"{WHAT}: hub dataset '{repo}' is not available here ({why}); download it where the "
                              f"hub is reachable (`huggingface-cli download --repo-type dataset {repo} --local-dir "
                              f"DIR`) and set {WHAT} to that folder") from None
        ds = ts.load_saved(Path(local), split, WHAT)
    return ds


def _from_folder(path: Path, split: str):
    if ts.is_saved_dataset(path):
        return ts.load_saved(path, split, WHAT)
    load_dataset = require("datasets", f"{WHAT} (a folder of dataset files)").load_dataset
    try:
        ds = load_dataset(str(path))
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{WHAT}: {path} is neither a save_to_disk folder nor a folder of dataset files "
                          f"({type(e).__name__})") from None
    return ts.pick_split(ds, split, WHAT)


def open_pretokenized(cfg, split: str, tok, log: Callable[[str], None] = lambda s: None) -> TokenizedDataset:
    d = cfg.data
    source = d.pretokenized
    path = Path(source).expanduser()
    ds = _from_folder(path, split) if path.exists() else _from_hub(source, split)
    need = ["input_ids"] + (["condition_input_ids"] if d.task == "conditional" else [])
    missing = [c for c in need if c not in ds.column_names]
    if missing:
        raise ConfigError(f"{WHAT}: {source} has no column '{missing[0]}' (columns: {', '.join(ds.column_names)}); "
                          f"a pre-tokenized set needs {' and '.join(need)}")
    if getattr(ds, "_indices", None) is not None:  # a selection: write it out once, contiguous
        ds = ds.flatten_indices()
    files = [Path(f["filename"]) for f in ds.cache_files]
    if not files:
        raise ConfigError(f"{WHAT}: {source} is held in memory, not on disk; save it with save_to_disk first")
    mode = "packed" if d.packing and d.task != "conditional" else "authors"
    columns = {"ids": "input_ids", **({"cond": "condition_input_ids"} if d.task == "conditional" else {})}
    out = TokenizedDataset(files, mode, tok, d, columns=columns, description=source)
    out.stats.examples = len(out)
    _check_vocabulary(out, tok, source)
    log(f"pre-tokenized training set {source}: {len(ds)} rows -> {len(out)} examples ({mode})")
    return out


def _check_vocabulary(ds: TokenizedDataset, tok, source: str, rows: int = 64) -> None:
    """Ids beyond the tokenizer's vocabulary mean the set was tokenized with another tokenizer."""
    n = len(tok)
    for i in range(min(rows, len(ds))):
        top = int(ds[i]["input_ids"].max())
        if top >= n:
            raise ConfigError(f"{WHAT}: {source} holds token id {top} but encoder.tokenizer has {n} tokens; the set "
                              f"was tokenized with another tokenizer (the authors' sets use t5-small)")
