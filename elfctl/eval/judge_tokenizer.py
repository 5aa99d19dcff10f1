"""The judge's tokenizer alone: entropy is measured on the judge's tokens and needs none of its weights.

Same sources as :func:`elfctl.eval.judge.load_judge` (hub id from the local cache, a local directory, a directory
holding a ``.gguf``, a ``.gguf`` file, ``builtin:smollm2-135m``); a GGUF's tokenizer is read from the file's
metadata, without dequantising its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from elfctl.errors import ConfigError, ElfRuntimeError


def load_judge_tokenizer(source: str, *, data_dir: Optional[str] = None) -> Any:
    from elfctl.data.assets import resolve_asset

    path = resolve_asset(source, data_dir=data_dir)  # ConfigError (one line) when not available offline
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ElfRuntimeError(f"judge {source}: transformers is not importable ({e})") from None
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else ([path] if path.suffix.lower() == ".gguf" else [])
    try:
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
