"""The judge's tokenizer alone: entropy is measured on the judge's tokens and needs none of its weights.

Same sources as :func:`elfctl.eval.judge.load_judge` (hub id from the local cache, a local directory, a directory
holding a ``.gguf``, a ``.gguf`` file, ``builtin:smollm2-135m``); a GGUF's tokenizer comes from the copy
``load_judge`` keeps after its first load, else from the file's metadata, never by dequantising its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from elfctl.errors import ConfigError, ElfRuntimeError


def _converted_copy(gguf: Path, data_dir: Optional[str]) -> Optional[Path]:
    """The dequantised copy of this GGUF that ``load_judge`` keeps (any dtype; the tokenizer is the same): its
    tokenizer loads in ~2 s, the GGUF's own in ~30 s on the 2-core CPU. None when there is none yet."""
    from elfctl.config import JUDGE_DTYPES
    from elfctl.eval import judge

    try:
        for dtype in JUDGE_DTYPES:
            folder = judge._converted_dir(gguf, dtype, data_dir)
            if (folder / judge._DONE).is_file():
                return folder
    except (AttributeError, OSError):  # judge.py keeps no such copy (any more): read the GGUF itself
        return None
    return None


def load_judge_tokenizer(source: str, *, data_dir: Optional[str] = None) -> Any:
    from elfctl.data.assets import resolve_asset

    path = resolve_asset(source, data_dir=data_dir)  # ConfigError (one line) when not available offline
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ElfRuntimeError(f"judge {source}: transformers is not importable ({e})") from None
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else ([path] if path.suffix.lower() == ".gguf" else [])
    converted = _converted_copy(ggufs[0], data_dir) if ggufs else None
    try:
        if converted is not None:
            return AutoTokenizer.from_pretrained(str(converted))
        if ggufs:
            return AutoTokenizer.from_pretrained(str(ggufs[0].parent), gguf_file=ggufs[0].name)
        return AutoTokenizer.from_pretrained(str(path))
    except ImportError as e:
        raise ElfRuntimeError(f"judge {source}: a package needed to read its tokenizer is missing ({e}); "
                              f"pip install 'elfctl[judge]'") from None
    except (OSError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not Path(path).exists():
            raise ConfigError(f"--judge: {source} not found") from None
        raise ElfRuntimeError(f"judge {source}: its tokenizer cannot be loaded from {path} ({first})") from None
