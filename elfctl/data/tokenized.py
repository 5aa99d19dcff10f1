"""Tokenized training sets on disk: tokenized once, memory-mapped, never held in RAM.

``build_tokenized`` tokenizes a split into Arrow files under ``<cache>/tokenized/<name>-<split>-<key>/`` (the key
hashes the source's identity, the tokenizer, max_length and max_input_length (unpacked sets), packing, the
split rules and max_examples), writes ``manifest.json`` last, renames the folder into place, and later runs
reuse it. Local files are streamed through a batched map over ``data.tokenize_workers`` forked processes
(:func:`tokenize_stream`, at most 2 batches per process in flight); hub datasets and ``save_to_disk`` folders,
already Arrow, go through HF ``datasets``' batched multi-process ``Dataset.map``.

A row holds a text's token ids (cut to max_length: enough to tell whether the example is truncated), or a
condition's and a target's; the fixed-length ``input_ids / attention_mask / cond_mask`` of an example are made
when it is read, by :class:`~elfctl.data.tokenize.SequenceBuilder`, so they are exactly the in-memory
``TokenDataset``'s. Packed sets store ``ids + [eos]`` per text: the flat values of that list column *are* the
concatenated stream, and window w is stream positions [w·L, (w+1)·L) — index arithmetic, no Python lists.
A single file's shuffled train/validation split is an index file (``order.npy``) over rows kept in file order.

:class:`TokenizedDataset` is map-style and picklable (DataLoader workers reopen the memory-mapped files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from elfctl.data.assets import cache_root
from elfctl.data.tokenize import SequenceBuilder, Stats, batch_token_ids, eos_id
from elfctl.errors import ConfigError

FORMAT = 1
MANIFEST = "manifest.json"
AUTO_PROCS_MIN_ROWS = 20_000  # below this, worker start-up costs more than it saves
AUTO_PROCS_MIN_BYTES = 16 * 2**20  # the same for local files, by size
STREAM_BATCH = 1000  # records per tokenizer call and per Arrow record batch of a local file
# Stats counters of truncation that SequenceBuilder keeps (stored per row, summed into the manifest)
CUT_COUNTS = tuple(k for k in ("truncated", "cond_truncated", "target_truncated") if hasattr(Stats(), k))


def tokenizer_fingerprint(tok) -> str:
    """A hash of everything that decides a tokenizer's ids (its serialised fast tokenizer, or its vocabulary)."""
    h = hashlib.sha256(type(tok).__name__.encode())
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tok.get_vocab().items())).encode())
    h.update(json.dumps([getattr(tok, "eos_token_id", None), getattr(tok, "sep_token_id", None),
                         getattr(tok, "pad_token_id", None)]).encode())
    return h.hexdigest()[:16]


def layout(data_cfg) -> str:
    if data_cfg.task == "conditional":
        return "pair"
    return "packed" if data_cfg.packing else "text"


class TokenizeBatch:
    """The ``map`` function: a batch of raw rows -> stored rows (blank records dropped). Picklable."""

    def __init__(self, tok, data_cfg, fields: tuple[str, ...], translation: bool = False, keep_blanks: bool = False):
        self.tok, self.cfg, self.fields, self.translation = tok, data_cfg, fields, translation
        self.mode = layout(data_cfg)
        # keep_blanks: one stored row per record, blank ones empty and flagged ('blank'), so stored row i is
        # record i (a single file's split selects records by index after tokenizing)
        self.keep_blanks = keep_blanks

    def _columns(self, batch: dict) -> list[list]:
        if self.translation:  # wmt-style rows: {"translation": {"de": ..., "en": ...}}
            return [[(t or {}).get(f) for t in batch["translation"]] for f in self.fields]
        return [batch[f] for f in self.fields]

    def __call__(self, batch: dict) -> dict:
        rows = list(zip(*self._columns(batch)))
        keep = [all(isinstance(v, str) and v.strip() for v in r) for r in rows]
        out = self._tokenize([r for r, k in zip(rows, keep) if k])
        if not self.keep_blanks:
            return out
        it = {c: iter(v) for c, v in out.items()}
        empty = {c: ([] if c.endswith("_ids") else 0 if c == "n_valid" else False) for c in out}
        full = {c: [next(it[c]) if k else empty[c] for k in keep] for c in out}
        return {**full, "blank": [not k for k in keep]}

    def _tokenize(self, rows: list[tuple]) -> dict:
        b = SequenceBuilder(self.tok, self.cfg)
        L = self.cfg.max_length
        if self.mode == "packed":
            eos = eos_id(self.tok)
            return {"input_ids": [ids + [eos] for ids in batch_token_ids(self.tok, [r[0] for r in rows])]}
        out: dict[str, list] = {k: [] for k in (*CUT_COUNTS, "n_valid")}

        def record(build) -> None:  # the builder's own counts, per row
            before = {k: getattr(b.stats, k) for k in (*CUT_COUNTS, "tokens")}
            build()
            for k in CUT_COUNTS:
                out[k].append(getattr(b.stats, k) > before[k])
            out["n_valid"].append(b.stats.tokens - before["tokens"])

        if self.mode == "pair":
            cs = [c[:L] for c in batch_token_ids(self.tok, [r[0] for r in rows])]
            ys = [y[:L] for y in batch_token_ids(self.tok, [r[1] for r in rows])]
            for c, y in zip(cs, ys):
                record(lambda: b.pair("", "", c, y))
            out.update(cond_ids=cs, target_ids=ys)
            return out
        # Cut very long texts before tokenizing (as TokenDataset does): 12 characters per token is far above
        # English's ~4-5, so a text cut here is still longer than max_length tokens and still counts as truncated.
        cap = L * 12
        ids = [i[:L] for i in batch_token_ids(self.tok, [r[0][:cap] for r in rows])]
        for i in ids:
            record(lambda: b.text("", i))
        out["input_ids"] = ids
        return out

    def arrow_schema(self) -> pa.Schema:
        """The columns' Arrow schema, the types ``features()`` gives, made without HF ``datasets`` (local files are
        tokenized into Arrow directly, on machines without it too)."""
        ids = pa.list_(pa.int32())
        blank = [("blank", pa.bool_())] if self.keep_blanks else []
        if self.mode == "packed":
            return pa.schema([("input_ids", ids), *blank])
        cols = [("cond_ids", ids), ("target_ids", ids)] if self.mode == "pair" else [("input_ids", ids)]
        return pa.schema([*cols, *((k, pa.bool_()) for k in CUT_COUNTS), ("n_valid", pa.int32()), *blank])

    def features(self):
        """The same columns as HF ``datasets`` Features, for ``Dataset.map`` (hub and save_to_disk sources)."""
        from datasets import Features, Value

        try:
            from datasets import List as ListOf
        except ImportError:  # datasets < 4
            from datasets import Sequence as ListOf
        ids = ListOf(Value("int32"))
        blank = {"blank": Value("bool")} if self.keep_blanks else {}
        if self.mode == "packed":
            return Features({"input_ids": ids, **blank})
        cols = {"cond_ids": ids, "target_ids": ids} if self.mode == "pair" else {"input_ids": ids}
        return Features({**cols, **{k: Value("bool") for k in CUT_COUNTS}, "n_valid": Value("int32"), **blank})


# --------------------------------------------------------------------------- local files: a streaming map

_WORKER_FN: Optional[TokenizeBatch] = None


def _worker_init(fn: TokenizeBatch) -> None:
    global _WORKER_FN
    _WORKER_FN = fn
    _default_malloc()


def _default_malloc() -> None:
    """Undo ``elfctl.cpu_allocator`` in a forked tokenizer: its batches vary in size, and a heap that never
    returns memory would fragment and grow with the number of batches (that is, with the corpus)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt(-4, 65536)      # M_MMAP_MAX: glibc's default
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD: glibc's default
    except (OSError, AttributeError):
        pass


def _worker_run(batch: dict) -> dict:
    return _WORKER_FN(batch)


def tokenize_stream(records, names: tuple[str, ...], fn: TokenizeBatch, out: Path, procs: int,
                    batch: int = 1000) -> int:
    """Tokenize an iterator of record tuples into one Arrow file, ``procs`` processes, in order; returns the
    number of records. At most 2 x procs batches are in flight, so memory does not depend on the corpus."""
    import collections
    import itertools
    import multiprocessing as mp

    schema = fn.arrow_schema()
    n = 0
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        def write(cols: dict) -> None:
            writer.write_batch(pa.record_batch([pa.array(cols[f.name], f.type) for f in schema], schema=schema))

        chunks = iter(lambda: list(itertools.islice(records, batch)), [])
        as_batch = lambda rows: {k: list(v) for k, v in zip(names, zip(*rows))}  # noqa: E731
        if procs <= 1:
            for rows in chunks:
                n += len(rows)
                write(fn(as_batch(rows)))
            return n
        import gc

        # Forked workers share the parent's pages until something writes to them; the cyclic GC of a child
        # would write to every object it inherited (copying the parent's whole heap as the job goes on), so
        # the inherited objects are frozen out of the GC's reach while the pool lives.
        gc.freeze()
        pool = mp.get_context("fork").Pool(procs, initializer=_worker_init, initargs=(fn,))
        gc.unfreeze()
        with pool:
            pending: collections.deque = collections.deque()
            for rows in chunks:
                n += len(rows)
                pending.append(pool.apply_async(_worker_run, (as_batch(rows),)))
                if len(pending) >= 2 * procs:
                    write(pending.popleft().get())
            while pending:
                write(pending.popleft().get())
    return n


def _map_file(path: Path) -> tuple[pa.Table, int]:
    """One Arrow IPC stream file as a zero-copy table over a read-only mapping, and the mapping's address."""
    import mmap

    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    buf = pa.py_buffer(mm)  # keeps the mapping alive as long as any buffer of the table
    return pa.ipc.open_stream(buf).read_all(), buf.address


def _open_table(files: list[Path]) -> pa.Table:
    """The Arrow IPC stream files as one memory-mapped table (zero-copy: pages are read on demand)."""
    tables = [_map_file(f)[0] for f in files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


class FileValues:
    """The values of a primitive Arrow array stored in a file, read with ``os.pread`` on demand.

    Training reads rows in random order. Through the mapping, every row read would map in the kernel's
    fault-around window (64 KB of neighbouring cached pages), so the resident set would grow with the number
    of rows read, up to the file's size; ``pread`` copies just the row, and the page cache stays the kernel's.
    """

    def __init__(self, path: Path, start: int, dtype: np.dtype, length: int):
        self.path, self.start, self.dtype, self.length = str(path), start, np.dtype(dtype), length
        self._fd, self._pid = -1, -1

    def __getstate__(self):
        return {**self.__dict__, "_fd": -1, "_pid": -1}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, s: slice) -> np.ndarray:
        lo, hi = int(s.start or 0), int(self.length if s.stop is None else s.stop)
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        n = max(hi - lo, 0) * self.dtype.itemsize
        data = os.pread(self._fd, n, self.start + lo * self.dtype.itemsize) if n else b""
        return np.frombuffer(data, dtype=self.dtype)

    @classmethod
    def of(cls, path: Path, base: int, size: int, arr: pa.Array):
        """The values of ``arr`` (no nulls) if its data lies in the file mapped at ``base``; else None."""
        data = arr.buffers()[1]
        dtype = np.dtype(arr.type.to_pandas_dtype())
        start = data.address - base + arr.offset * dtype.itemsize
        if arr.null_count or not 0 <= start <= size - len(arr) * dtype.itemsize:
            return None
        return cls(path, start, dtype, len(arr))


def read_offsets_values(chunk, path: Path, base: int, size: int) -> tuple[np.ndarray, object]:
    """(offsets in RAM, values read from the file) of one chunk of a list column; ``offsets_values`` (through
    the mapping) when the buffers are not plain file bytes."""
    if isinstance(chunk, pa.FixedSizeListArray):
        offsets = (np.arange(len(chunk) + 1, dtype=np.int64) + chunk.offset) * chunk.type.list_size
    else:
        f = FileValues.of(path, base, size, chunk.offsets)
        if f is None:
            return offsets_values(chunk)
        offsets = f[0:len(f)].copy()
    values = FileValues.of(path, base, size, chunk.values)
    if values is None:
        return offsets_values(chunk)
    return offsets, values


def offsets_values(chunk) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) numpy views of one chunk of a list column; row j is values[offsets[j]:offsets[j+1]]."""
    if isinstance(chunk, pa.FixedSizeListArray):  # Sequence(..., length=n) columns: no offsets buffer
        size = chunk.type.list_size
        offsets = (np.arange(len(chunk) + 1, dtype=np.int64) + chunk.offset) * size
        return offsets, chunk.values.to_numpy(zero_copy_only=False)
    # ListArray.offsets honours the chunk's slice; .values is the whole buffer the offsets point into
    return chunk.offsets.to_numpy(), chunk.values.to_numpy(zero_copy_only=False)


class TokenizedDataset(Dataset):
    """Fixed-length examples read from memory-mapped Arrow rows (see the module docstring).

    ``mode``: 'text' / 'pair' (rows through SequenceBuilder), 'packed' (windows of the ids stream) or 'authors'
    (the authors' pre-tokenized rows: ``condition_input_ids[:max_input_length] + input_ids``, cut to max_length
    and padded, as their loader does). ``order`` (a .npy file of stored row numbers) puts the rows in another
    order (a single file's shuffled train/validation split); packed windows then follow that order too.
    """

    def __init__(self, files: list[Path], mode: str, tok, data_cfg, stats: Optional[Stats] = None,
                 columns: Optional[dict[str, str]] = None, description: str = "", order: Optional[Path] = None):
        self.files = [Path(f) for f in files]
        self.order_file = Path(order) if order is not None else None
        self.mode, self.tok, self.cfg = mode, tok, data_cfg
        self.stats = stats or Stats()
        self.description = description
        # logical column -> stored column ('ids' for text/packed/authors; 'cond'/'target' for pairs, 'cond' for
        # the authors' conditional rows)
        self.columns = columns or ({"cond": "cond_ids", "target": "target_ids"} if mode == "pair"
                                   else {"ids": "input_ids"})
        self.L = data_cfg.max_length
        self._state: Optional[dict] = None
        self._len = self._open()["len"]

    # -- memory-mapped state, rebuilt lazily in every process
    def _open(self) -> dict:
        if self._state is None:
            cols: dict[str, list] = {name: [] for name in self.columns}
            for path in self.files:
                table, base = _map_file(path)
                size = path.stat().st_size
                for name, col in self.columns.items():
                    # per chunk: offsets (in RAM: 4-8 bytes per row) and values (read from the file per row);
                    # row j of a chunk is values[offsets[j]:offsets[j+1]]
                    cols[name] += [read_offsets_values(c, path, base, size) for c in table.column(col).chunks]
            lead = cols["ids"] if "ids" in cols else cols["target"]
            row_starts = np.cumsum([0] + [len(o) - 1 for o, _ in lead])
            state = {"cols": cols, "row_starts": row_starts, "len": int(row_starts[-1]), "order": None}
            if self.order_file is not None:
                order = np.load(self.order_file, mmap_mode="r")
                state.update(order=order, len=len(order))
            if self.mode == "packed" and state["order"] is not None:
                # stream position of each ordered row: 8 bytes per row (a few MB per million documents)
                lengths = np.concatenate([np.diff(o) for o, _ in cols["ids"]] or [np.zeros(0, np.int64)])
                starts = np.zeros(len(state["order"]) + 1, dtype=np.int64)
                np.cumsum(lengths[state["order"]], out=starts[1:])
                state.update(row_tok_starts=starts, len=int(starts[-1]) // self.L)
            elif self.mode == "packed":
                ids = cols["ids"]
                tok_starts = np.cumsum([0] + [int(o[-1] - o[0]) for o, _ in ids])
                state.update(tok_starts=tok_starts, len=int(tok_starts[-1]) // self.L)
            self._state = state
        return self._state

    def __getstate__(self):  # DataLoader workers (spawn) and pickles reopen the mapped files themselves
        return {**self.__dict__, "_state": None}

    def __len__(self) -> int:
        return self._len

    def _row(self, name: str, i: int) -> np.ndarray:
        st = self._open()
        c = int(np.searchsorted(st["row_starts"], i, side="right")) - 1
        offsets, values = st["cols"][name][c]
        j = i - int(st["row_starts"][c])
        return values[offsets[j]:offsets[j + 1]]

    def _stored(self, i: int) -> int:
        order = self._open()["order"]
        return i if order is None else int(order[i])

    def _ordered_window(self, w: int) -> np.ndarray:
        st = self._open()
        start, stop = w * self.L, (w + 1) * self.L
        starts, order = st["row_tok_starts"], st["order"]
        k = int(np.searchsorted(starts, start, side="right")) - 1
        parts = []
        while start < stop:
            row = self._row("ids", int(order[k]))
            lo = start - int(starts[k])
            piece = row[lo:lo + stop - start]
            parts.append(piece)
            start += len(piece)
            k += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _window(self, w: int) -> np.ndarray:
        st = self._open()
        if st["order"] is not None:
            return self._ordered_window(w)
        start, stop = w * self.L, (w + 1) * self.L
        starts, chunks = st["tok_starts"], st["cols"]["ids"]
        c = int(np.searchsorted(starts, start, side="right")) - 1
        parts = []
        while start < stop:
            offsets, values = chunks[c]
            base = int(offsets[0])
            lo = base + start - int(starts[c])
            hi = min(base + stop - int(starts[c]), int(offsets[-1]))
            parts.append(values[lo:hi])
            start += hi - lo
            c += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -self._len <= i < self._len:
            raise IndexError(i)
        i = i % self._len
        L = self.L
        if self.mode == "packed":
            return {"input_ids": torch.from_numpy(self._window(i).astype(np.int64)),
                    "attention_mask": torch.ones(L, dtype=torch.bool), "cond_mask": torch.zeros(L, dtype=torch.bool)}
        if self.mode == "authors":
            return self._authors_item(i)
        b = SequenceBuilder(self.tok, self.cfg)
        r = self._stored(i)
        if self.mode == "pair":
            return b.pair("", "", self._row("cond", r).tolist(), self._row("target", r).tolist())
        return b.text("", self._row("ids", r).tolist())

    def _authors_item(self, i: int) -> dict[str, torch.Tensor]:
        L, d = self.L, self.cfg
        cond = self._row("cond", i)[: d.max_input_length] if "cond" in self.columns else np.zeros(0, np.int64)
        seq = np.concatenate([cond, self._row("ids", i)])[:L].astype(np.int64)
        n, n_cond = len(seq), min(len(cond), L)
        fill = eos_id(self.tok) if d.pad_token == "eos" else SequenceBuilder(self.tok, d).pad
        ids = torch.full((L,), fill, dtype=torch.long)
        ids[:n] = torch.from_numpy(seq)
        pos = torch.arange(L)
        # valid = the stored tokens, padding excluded whatever the pad token (as SequenceBuilder and the
        # authors' loader do; with eos as pad the objective puts the loss on the padding itself)
        return {"input_ids": ids, "attention_mask": pos < n, "cond_mask": pos < n_cond}

    def raw(self, i: int) -> dict:
        raise IndexError("a tokenized dataset keeps no per-example source text (use reference_texts)")


# --------------------------------------------------------------------------- building and the cache

def _source(cfg, split: str, data_dir: Optional[str]) -> tuple[dict, Callable]:
    """(identity of the source split, a function giving ('local', file, part) for a local or built-in file, or
    ('hf', Dataset, fields, translation) for a hub dataset or a save_to_disk folder)."""
    from elfctl.data.assets import is_hub_id
    from elfctl.data import text_stream as ts

    d = cfg.data
    path = Path(d.dataset).expanduser()
    if path.is_dir() and ts.is_saved_dataset(path):
        def open_saved(tmp: Path):
            return ("hf", ts.load_saved(path, split, "data.dataset"), _fields(d), False)
        return {"saved": str(path.resolve()), "split": split}, open_saved
    if d.dataset.startswith("builtin:") or path.exists() or not is_hub_id(d.dataset) \
            or d.dataset.endswith((".jsonl", ".txt", ".json")):
        f, part = ts.local_source(d, split, data_dir)
        st = f.stat()
        ident = {"file": str(f.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "part": part,
                 "split_seed": d.split_seed if part else None, "val_fraction": d.val_fraction if part else None}

        def open_local(tmp: Path):
            return ("local", f, part)
        return ident, open_local

    def open_hub(tmp: Path):
        ds = ts.load_hub(d.dataset, split, d)
        translation = d.task == "conditional" and "translation" in ds.column_names
        fields = _fields(d)
        if not translation:
            missing = [f for f in fields if f not in ds.column_names]
            if missing:
                raise ConfigError(f"data.dataset: hub dataset '{d.dataset}' has no field '{missing[0]}' (fields "
                                  f"present: {', '.join(ds.column_names)}); set data."
                                  f"{'text' if len(fields) == 1 else 'input/output'}_field")
        return ("hf", ds, fields, translation)
    return {"hub": d.dataset, "config": d.hub_config, "split": split}, open_hub


def _fields(d) -> tuple[str, ...]:
    return (d.input_field, d.output_field) if d.task == "conditional" else (d.text_field,)


def cache_key(cfg, split: str, source: dict, tok) -> dict:
    d = cfg.data
    packed = layout(d) == "packed"  # a packed set stores whole texts: max_length only cuts the windows on reading
    return {"format": FORMAT, "source": source, "task": d.task, "fields": list(_fields(d)),
            "max_length": None if packed else d.max_length,
            "max_input_length": None if packed else d.max_input_length, "packing": d.packing,
            "max_examples": d.max_examples if split == d.train_split else None,
            "tokenizer": tokenizer_fingerprint(tok), "layout": layout(d),
            # the stored ids are the same, but the per-row truncation counts follow the layout
            **({"cond_layout": d.cond_layout} if d.task == "conditional" else {})}


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in Path(text).name or text)
    return keep.strip("-.")[:40] or "data"


def auto_procs() -> int:
    """One tokenizer process per two cores, at most 8: a fast tokenizer already spreads one process's batch over
    about two cores (measured on 2 cores: 1 process 724k tokens/s, 2 processes 640k)."""
    return max(1, min((os.cpu_count() or 1) // 2, 8))


def num_procs(setting: int, rows: int) -> int:
    if setting > 0:
        return setting
    return 1 if rows < AUTO_PROCS_MIN_ROWS else auto_procs()


def build_tokenized(cfg, split: str, tok, data_dir: Optional[str] = None,
                    log: Callable[[str], None] = lambda s: None) -> TokenizedDataset:
    """The split tokenized into (or read from) the on-disk cache; see the module docstring."""
    d = cfg.data
    data_dir = data_dir or d.data_dir
    ident, opener = _source(cfg, split, data_dir)
    key = cache_key(cfg, split, ident, tok)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = _slug(ident.get("file") or ident.get("saved") or ident.get("hub") or "data")
    folder = cache_root(data_dir) / "tokenized" / f"{name}-{split}-{digest}"
    if not (folder / MANIFEST).is_file():
        _build(folder, key, opener, cfg, split, tok, log)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    stats = Stats(examples=0, tokens=manifest["tokens"], skipped=manifest["skipped"],
                  **{k: manifest.get(k, 0) for k in CUT_COUNTS})
    order = folder / manifest["order"] if manifest.get("order") else None
    ds = TokenizedDataset([folder / f for f in manifest["files"]], manifest["layout"], tok, d, stats=stats,
                          description=str(folder), order=order)
    stats.examples = len(ds)
    if manifest["layout"] == "packed":
        stats.tokens = len(ds) * d.max_length
    return ds


def _build(folder: Path, key: dict, opener, cfg, split: str, tok, log) -> None:
    """Tokenize into a temporary folder, write the manifest last, then rename it into place."""
    import time

    from elfctl.atomic import atomic_write_json

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        src = opener(tmp)
        built = _build_local(tmp, cfg, split, tok, *src[1:]) if src[0] == "local" else \
            _build_hf(tmp, folder, cfg, split, tok, *src[1:])
        seconds = time.perf_counter() - t0
        manifest = {**key, "layout": layout(cfg.data), **built, "seconds": round(seconds, 2)}
        atomic_write_json(tmp / MANIFEST, manifest)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same cache first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        procs, tokens = built["processes"], built["tokens"]
        log(f"tokenized {built['records']} records ({tokens} tokens) of {cfg.data.dataset} [{split}] with {procs} "
            f"process{'es' if procs > 1 else ''} in {seconds:.1f}s ({tokens / max(seconds, 1e-9):.0f} tok/s) -> "
            f"{folder}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sums(table: pa.Table, d, rows: Optional[np.ndarray] = None) -> dict:
    """Token and truncation counts over the stored rows (or the rows ``rows`` of them)."""
    def column(name: str) -> np.ndarray:
        return np.concatenate([c.to_numpy(zero_copy_only=False) for c in table.column(name).chunks] or [np.zeros(0)])

    if layout(d) == "packed":
        lengths = np.concatenate([np.diff(o) for o, _ in map(offsets_values, table.column("input_ids").chunks)]
                                 or [np.zeros(0, np.int64)])
        return {"tokens": int((lengths if rows is None else lengths[rows]).sum()), **{k: 0 for k in CUT_COUNTS}}
    out = {}
    for k in ("n_valid", *CUT_COUNTS):
        v = column(k).astype(np.int64)
        out[k] = int((v if rows is None else v[rows]).sum())
    out["tokens"] = out.pop("n_valid")
    return out


def _build_local(tmp: Path, cfg, split: str, tok, f: Path, part: Optional[str]) -> dict:
    """A local file, read line by line and tokenized by ``data.tokenize_workers`` processes, in file order.

    A single file's split (``part``) keeps one row per record (blank ones flagged) and stores the selection, in
    ``text_sources``' shuffled order, as ``order.npy``: the records are never shuffled in memory.
    """
    import itertools

    from elfctl.data import text_stream as ts

    d = cfg.data
    names = ts.normalised_fields(d)
    cap = d.max_examples if d.max_examples and split == d.train_split else None
    records = ts.file_records(f, d)
    if part is None and cap:
        records = itertools.islice(records, cap)
    procs = d.tokenize_workers or (1 if f.stat().st_size < AUTO_PROCS_MIN_BYTES else auto_procs())
    fn = TokenizeBatch(tok, d, names, keep_blanks=part is not None)
    n = tokenize_stream(records, names, fn, tmp / "tokens.arrow", procs, batch=STREAM_BATCH)
    if n == 0:
        raise ConfigError(f"{f}: no examples (the file is empty)")
    table = _open_table([tmp / "tokens.arrow"])
    out = {"files": ["tokens.arrow"], "order": None, "processes": procs, "records": n}
    if part is None:
        return {**out, "rows": table.num_rows, "skipped": n - table.num_rows, **_sums(table, d)}
    order = ts.split_indices(n, part, d)
    if cap:
        order = order[:cap]
    blank = np.concatenate([c.to_numpy(zero_copy_only=False) for c in table.column("blank").chunks])
    keep = order[~blank[order]]
    np.save(tmp / "order.npy", keep)
    return {**out, "order": "order.npy", "rows": len(keep), "skipped": len(order) - len(keep), **_sums(table, d, keep)}


def _build_hf(tmp: Path, folder: Path, cfg, split: str, tok, ds, fields, translation) -> dict:
    """A hub dataset or save_to_disk folder (already memory-mapped Arrow) through HF ``datasets``' ``map``."""
    import datasets

    d = cfg.data
    if d.max_examples and split == d.train_split and d.max_examples < len(ds):
        ds = ds.select(range(d.max_examples))
    fn = TokenizeBatch(tok, d, fields, translation)
    procs = min(num_procs(d.tokenize_workers, len(ds)), max(len(ds), 1))
    was = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        out = ds.map(fn, batched=True, batch_size=1000, writer_batch_size=1000, num_proc=procs if procs > 1 else None,
                     remove_columns=ds.column_names, features=fn.features(), load_from_cache_file=False,
                     cache_file_name=str(tmp / "tokens.arrow"), new_fingerprint=folder.name[-16:])
    finally:
        if was:
            datasets.enable_progress_bars()
    files = [Path(c["filename"]) for c in out.cache_files]
    if any(c.parent.resolve() != tmp.resolve() for c in files):
        raise ConfigError(f"data.dataset: tokenizing wrote outside {tmp} ({files[0]})")  # never expected
    table = out.data.table
    return {"files": [c.name for c in files], "order": None, "processes": procs, "records": len(ds),
            "rows": table.num_rows, "skipped": len(ds) - table.num_rows, **_sums(table, d)}
