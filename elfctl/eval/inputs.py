"""Reading samples to score: our JSONL, a JSON list of strings, or plain text — recognised by content.

The format is read from the file's content, never guessed from its name alone:

* **JSONL** when the first non-blank line is a JSON object: ``elfctl sample`` output (a ``{"type": "header"}``
  line, then sample lines) or any JSONL whose objects have a string ``text`` field;
* **JSON** when the whole file is one JSON list (of strings);
* **plain text** otherwise. When the file has at least one blank line (a line of only whitespace) between
  non-blank lines, samples are separated by blank lines and each sample's lines are joined with one space;
  otherwise every non-blank line is one sample. Whitespace runs inside a sample become one space.

The extension (any case: ``.JSONL`` is ``.jsonl``) may only confirm the content: a ``.jsonl`` or ``.json`` file
that is not JSON is an error, and so is a file that starts as JSONL but has a line that is not a JSON object.
A ``.txt`` file holding JSONL (``elfctl sample --out x.txt``) is read as the JSONL it is, never scored line by
line as text.

Samples whose text is empty are kept (diversity counts them); a file with no sample, or only empty ones, is an
error. Every error is a :class:`ConfigError` naming the flag and the file (exit 2, one line).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from elfctl.errors import ConfigError
from elfctl.rundir.names import CONFIG_NAME

FORMATS = ("jsonl", "json", "text")


@dataclass
class Samples:
    path: Path
    texts: list[str]
    header: dict = field(default_factory=dict)
    references: list[Optional[str]] = field(default_factory=list)
    format: str = "text"            # jsonl | json | text: what the content was read as
    inputs: list[Optional[str]] = field(default_factory=list)   # conditional samples: the input of each


# Files an elfctl user has at hand that are never samples: configs, weights, checkpoints, arrays, archives.
NOT_SAMPLES = {".yaml": "a YAML config", ".yml": "a YAML config", ".toml": "a TOML config",
               ".safetensors": "a weights file", ".pt": "a torch checkpoint", ".pth": "a torch checkpoint",
               ".bin": "a weights file", ".ckpt": "a checkpoint", ".pkl": "a pickle", ".pickle": "a pickle",
               ".npy": "a numpy array", ".npz": "a numpy archive", ".gguf": "a GGUF model",
               ".parquet": "a Parquet table", ".arrow": "an Arrow table", ".zip": "an archive",
               ".gz": "a compressed file", ".tar": "an archive", ".png": "an image", ".jpg": "an image"}
SAMPLE_FORMS = ("elfctl sample's JSONL output, a JSON list of strings, or plain text (one sample per line)")


def _text(path: Path, flag: str) -> str:
    from elfctl.data.text_sources import read_utf8

    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "file not found"
        raise ConfigError(f"{flag}: {what}: {path}")
    kind = NOT_SAMPLES.get(path.suffix.lower())
    if kind is not None:
        raise ConfigError(f"{flag}: {path} is {kind}, not samples; give {SAMPLE_FORMS}")
    text = read_utf8(path)
    if "\x00" in text:  # UTF-8 decodes NUL bytes: a binary file (weights, tensors), not text
        raise ConfigError(f"{flag}: {path} is a binary file (it holds NUL bytes), not samples; give {SAMPLE_FORMS}")
    return text


def sniff_format(text: str) -> str:
    """``jsonl``, ``json`` or ``text`` from the content (see the module docstring)."""
    body = text.strip()
    if body.startswith("["):
        try:
            if isinstance(json.loads(body), list):
                return "json"
        except json.JSONDecodeError:
            pass
    first = next((line for line in text.split("\n") if line.strip()), "")
    if first.lstrip().startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except json.JSONDecodeError:
            pass
    return "text"


def _check_extension(path: Path, fmt: str, text: str) -> None:
    """The extension may confirm the content, never contradict it."""
    ext = path.suffix.lower()
    if ext == ".jsonl" and fmt != "jsonl":
        first = next((i for i, line in enumerate(text.split("\n"), 1) if line.strip()), 1)
        raise ConfigError(f"{path}:{first}: malformed JSON (a .jsonl file must hold one JSON object per line)")
    if ext == ".json" and fmt == "text":
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: malformed JSON at line {e.lineno} ({e.msg})") from None
        raise ConfigError(f"{path}: a .json samples file must be a list of strings")
    if ext == ".json" and fmt == "jsonl" and "\n" not in text.strip():
        obj = json.loads(text)
        if obj.get("type") != "header" and "text" not in obj:
            raise ConfigError(f"{path}: a .json samples file must be a list of strings")


def _read_jsonl(path: Path, text: str) -> Samples:
    from elfctl.data.text_sources import json_objects

    header, texts, refs, inputs = {}, [], [], []
    try:
        for i, obj in json_objects(path, text):
            if obj.get("type") == "header":
                header = obj
                continue
            if not isinstance(obj.get("text"), str):
                raise ConfigError(f"{path}:{i}: missing string field 'text' (a JSONL samples file has one "
                                  f"{{\"text\": ...}} object per line)")
            texts.append(obj["text"])
            refs.append(obj.get("reference"))
            inputs.append(obj.get("input"))
    except ConfigError as e:
        if path.suffix.lower() == ".jsonl" or "malformed JSON" not in str(e):
            raise
        raise ConfigError(f"{e} — its first line is JSON, so the whole file is read as JSONL") from None
    return Samples(path, texts, header, refs, "jsonl", inputs)


def _read_json(path: Path, text: str) -> Samples:
    data = json.loads(text)
    if not all(isinstance(x, str) for x in data):
        raise ConfigError(f"{path}: a JSON samples file must be a list of strings")
    return Samples(path, data, {}, [None] * len(data), "json")


def _read_text(path: Path, text: str) -> Samples:
    body = text.strip()
    parts = re.split(r"\n[ \t\r\f\v]*\n", body) if re.search(r"\n[ \t\r\f\v]*\n", body) else body.splitlines()
    texts = [" ".join(p.split()) for p in parts if p.strip()]
    return Samples(path, texts, {}, [None] * len(texts), "text")


def read_samples(path: Path, flag: str = "--samples") -> Samples:
    """One samples file, its format read from its content. ``flag`` names the option in error messages."""
    path = Path(path)
    text = _text(path, flag)
    if not text.strip():
        raise ConfigError(f"{flag}: {path}: empty file, no samples")
    fmt = sniff_format(text)
    _check_extension(path, fmt, text)
    out = {"jsonl": _read_jsonl, "json": _read_json, "text": _read_text}[fmt](path, text)
    if not out.texts:
        raise ConfigError(f"{flag}: {path}: no samples")
    if all(not t.strip() for t in out.texts):
        raise ConfigError(f"{flag}: {path}: all {len(out.texts)} samples are empty")
    return out


def read_references(path: Path, flag: str = "--references") -> list[str]:
    """References from a file: an ``elfctl sample`` JSONL's ``reference`` fields, or one text per sample."""
    s = read_samples(path, flag)
    if s.format == "jsonl" and s.header and any(r is not None for r in s.references):
        return [r or "" for r in s.references]
    return s.texts


def check_pairs(hypotheses: list, references: list, hyp_source, ref_source) -> None:
    """Hypotheses and references must match one to one."""
    if len(hypotheses) != len(references):
        raise ConfigError(f"{ref_source}: {len(references)} references but {hyp_source} has {len(hypotheses)} "
                          f"hypotheses; they must match one to one")


# Header fields that differ between seeds of the same run and settings (or that only describe how fast or
# where it ran); every other field must agree for files to be averaged as seeds.
_PER_SEED_FIELDS = frozenset({"type", "seed", "wall_time_s", "device", "kernels_backend", "rows_per_batch",
                              "num_samples", "interrupted", "partial", "complete", "samples_written",
                              "created", "started", "finished", "timestamp"})


def _first_header_difference(a: dict, b: dict) -> Optional[str]:
    for key in sorted((set(a) | set(b)) - _PER_SEED_FIELDS):
        if a.get(key) != b.get(key):
            return f"{key} {a.get(key)!r} vs {b.get(key)!r}"
    return None


def check_same_run(files: list[Samples]) -> None:
    """Several files are averaged as seeds only when they are seeds of one run, checkpoint and settings.

    The check reads the ``elfctl sample`` headers: every field but the per-seed ones must agree, and the seeds
    must differ. Files without a header cannot be checked and are refused too (``--allow-mixed`` overrides).
    """
    if len(files) < 2:
        return
    hint = "; pass --allow-mixed to average them anyway"
    bare = [s for s in files if not s.header]
    if bare:
        raise ConfigError(f"--samples: {bare[0].path} has no elfctl header, so it cannot be checked to come from "
                          f"the same run and settings as the other files{hint}")
    first = files[0]
    for s in files[1:]:
        diff = _first_header_difference(first.header, s.header)
        if diff:
            raise ConfigError(f"--samples: {first.path} and {s.path} are not seeds of one run and settings "
                              f"({diff}){hint}")
        if (any(s.inputs) or any(first.inputs)) and s.inputs != first.inputs:
            raise ConfigError(f"--samples: {first.path} and {s.path} are not seeds of one run and settings (they "
                              f"condition on different inputs){hint}")
    seeds = [s.header.get("seed") for s in files]
    dup = next((x for i, x in enumerate(seeds) if x in seeds[:i]), None)
    if dup is not None or None in seeds:
        twice = [str(s.path) for s in files if s.header.get("seed") == dup]
        raise ConfigError(f"--samples: {' and '.join(twice)} have the same seed {dup}; averaging them would count "
                          f"one seed twice{hint}")


def _run_time(run: Path) -> float:
    cfg = run / CONFIG_NAME
    return (cfg if cfg.is_file() else run).stat().st_mtime


def newest_samples(runs_dir: Path) -> Path:
    """The newest ``samples/*.jsonl`` of the newest run (by its config.yaml's time) that has samples."""
    runs = [r for r in Path(runs_dir).glob("*") if r.is_dir() and any((r / "samples").glob("*.jsonl"))]
    if not runs:
        raise ConfigError(f"no samples found under {Path(runs_dir).resolve()}/*/samples/ (run `elfctl sample` first, "
                          f"or pass --samples FILE)")
    run = max(runs, key=lambda r: (_run_time(r), r.name))
    return max((run / "samples").glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
