"""Loading the causal LM that scores Gen PPL (GPT-2 Large in the paper; SmolLM2-135M offline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from elfctl.errors import ConfigError

PAPER_JUDGE = "gpt2-large"


@dataclass
class Judge:
    name: str
    model: Any
    tokenizer: Any

    @property
    def label(self) -> str:
        if self.name == PAPER_JUDGE:
            return f"judge {self.name} (the paper's)"
        return (f"offline judge {self.name}: comparable only with runs scored by the same judge, not with the "
                f"paper's GPT-2 Large numbers")

    @property
    def eos_id(self):
        return self.tokenizer.eos_token_id


def load_judge(source: str, *, dtype: str = "float32", device: str | torch.device = "cpu") -> Judge:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from elfctl.data.assets import resolve_asset

    hf_logging.disable_progress_bar()  # one line per judge, not a bar per tensor

    path = resolve_asset(source)
    torch_dtype = getattr(torch, dtype)
    ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else ([path] if path.suffix == ".gguf" else [])
    try:
        if ggufs:
            folder, name = ggufs[0].parent, ggufs[0].name
            tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch_dtype)
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype)
    except ImportError as e:
        raise ConfigError(f"judge {source}: a package is missing to load it ({e}); pip install 'elfctl[judge]'") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"judge {source}: cannot be loaded from {path} ({str(e).splitlines()[0]})") from None
    model.to(device).eval()
    return Judge(source, model, tok)
