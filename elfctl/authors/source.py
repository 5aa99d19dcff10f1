"""What ``elfctl import SOURCE`` can name, resolved to one local ``checkpoint_<step>`` file.

* a local file (their ``checkpoint_<step>``, any name);
* a local folder holding such files (the highest step is taken, as their loader does);
* a Hugging Face model repo id, ``org/name`` or ``org/name/sub/folder`` (downloaded when the hub answers,
  else taken from the local HF cache only; otherwise one line saying how to point at a local file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from elfctl.authors.reading import newest_checkpoint_file
from elfctl.errors import ConfigError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+(/[\w.\-]+)*")


@dataclass
class ResolvedSource:
    source: str                 # as the user gave it
    file: Path                  # the checkpoint_<step> file to read
    hub_repo: Optional[str] = None
    hub_subfolder: Optional[str] = None


# A name ending in one of these is a file someone means on this machine, never a hub repo or folder.
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl", ".pickle", ".msgpack", ".npz", ".json",
                 ".yaml", ".yml", ".txt", ".jsonl", ".zip", ".tar", ".gz")


def looks_like_path(text: str) -> bool:
    """``./x``, ``/x``, ``~/x``, a name with a file suffix (``bad/missing.pt``), or one under a folder that exists
    here (``runs/x``): a local path, even when nothing is there."""
    path = Path(text).expanduser()
    return (text.startswith((".", "/", "~")) or path.suffix.lower() in FILE_SUFFIXES
            or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()))


def looks_like_hub_id(text: str) -> bool:
    """``org/name[/sub...]`` that is not a path on this machine."""
    return (not looks_like_path(text) and not Path(text).expanduser().exists()
            and bool(_HUB_ID.fullmatch(text)))


def split_hub_id(text: str) -> tuple[str, Optional[str]]:
    parts = text.strip("/").split("/")
    return "/".join(parts[:2]), ("/".join(parts[2:]) or None)


def _hub_folder(repo: str, sub: Optional[str]) -> Path:
    from elfctl.data.assets import hub_reachable

    online = hub_reachable()
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        local = Path(snapshot_download(repo, repo_type="model", local_files_only=not online,
                                       allow_patterns=[f"{sub}/*"] if sub else None))
    except Exception as e:  # noqa: BLE001 - any failure here means "not available"
        how = (f"download it where the hub is reachable (huggingface-cli download {repo}"
               f"{' --include ' + repr(sub + '/*') if sub else ''} --local-dir DIR), copy DIR here and run "
               f"`elfctl import DIR` or `elfctl import /path/to/checkpoint_<step>`")
        if not online:
            raise ConfigError(f"{repo}{'/' + sub if sub else ''}: no such file or folder here, and as hub model "
                              f"'{repo}' it is not reachable from this machine (no connection to the Hugging Face "
                              f"hub) and not in its local cache; {how}") from None
        raise ConfigError(f"hub model '{repo}' could not be downloaded ({type(e).__name__}); {how}") from None
    return local / sub if sub else local


def resolve_source(source: str) -> ResolvedSource:
    """The local checkpoint file for ``source`` (file, folder or hub id)."""
    path = Path(source).expanduser()
    if path.is_file():
        return ResolvedSource(source, path)
    if path.is_dir():
        return ResolvedSource(source, newest_checkpoint_file(path))
    if looks_like_path(source):
        raise ConfigError(f"SOURCE: file not found: {source} (looked at {path.resolve()}); give an existing "
                          f"checkpoint_<step> file, a folder of them, or a hub repo id (org/name)")
    if not looks_like_hub_id(source):
        raise ConfigError(f"SOURCE: {source} is neither a file, a folder nor a hub repo id (org/name); looked at "
                          f"{path.resolve()}")
    repo, sub = split_hub_id(source)
    folder = _hub_folder(repo, sub)
    if not folder.is_dir():
        raise ConfigError(f"hub model '{repo}' has no folder '{sub}'")
    return ResolvedSource(source, newest_checkpoint_file(folder), hub_repo=repo, hub_subfolder=sub)
