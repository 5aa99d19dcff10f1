"""The Gen PPL scoring rules, declared as one frozen object, printed with every result and hashed.

Two numbers are comparable exactly when their protocol hashes match (the judge is part of the protocol).

``elf`` (the paper's protocol, made independent of batching): retokenize each sample's text with the judge's tokenizer
(no special tokens added by the tokenizer); prepend the judge's BOS when the judge has one in the BOS table
(SmolLM2: ``<|endoftext|>``; GPT-2 Large: none, as in the paper); cut the text after its first EOS; truncate to
``max_length`` tokens; a sample that ends before ``max_length`` ends with exactly one EOS (its own first EOS, or
one appended); score every token after the first; aggregate token-weighted NLL in float64; PPL = exp(mean NLL).

``mdlm`` (MDLM / Duo's ``compute_generative_perplexity``): the text scored as it is — no BOS added, nothing cut
after an EOS inside the text; truncate to ``max_length``; score every token after the first except EOS tokens,
but count the first EOS of the padded row (position >= 1), where rows are padded with EOS to the longest sample
of the whole set. See docs/EVALUATION.md for the exact differences.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Optional

from elfctl.config import JUDGE_DTYPES as DTYPES
from elfctl.errors import ConfigError
from elfctl.eval.judge import OFFLINE_JUDGE

PROTOCOLS = ("elf", "mdlm")

# The BOS a judge's samples are prefixed with under the `elf` protocol (None: no BOS; the first text token is
# then the unscored context). GPT-2 Large has none (the paper and the authors' code add nothing); SmolLM2 is a
# Llama model trained with `<|endoftext|>` (id 0) at document boundaries, which it needs as context.
JUDGE_BOS = {"gpt2-large": None, "gpt2": None, "gpt2-medium": None, "gpt2-xl": None,
             OFFLINE_JUDGE: "<|endoftext|>"}
# The end-of-document token (the tokenizer's eos_token is a chat-turn end for instruct models).
JUDGE_EOS = {OFFLINE_JUDGE: "<|endoftext|>"}


@dataclass(frozen=True)
class Protocol:
    """Every rule that changes a Gen PPL / entropy number. ``hash`` is sha256 of the canonical JSON, 12 hex."""

    name: str
    judge: str
    judge_dtype: str = "float32"
    retokenize: str = "decode to text, re-encode with the judge's tokenizer, no special tokens added"
    bos: Optional[str] = None               # token prepended to every sample (None: nothing prepended)
    eos: Optional[str] = None               # the judge's end-of-document token (None: the tokenizer's eos_token)
    max_length: int = 1024                  # judge tokens per sample, BOS and EOS included; longer: truncated
    scored: str = "every token after the first"
    eos_rule: str = "cut"                   # cut | mdlm (see EOS_RULES)
    aggregation: str = "token-weighted mean NLL over all samples, float64; PPL = exp(mean NLL)"
    entropy: str = ("unigram entropy (nats) of each sample's judge tokens (the text's own tokens after truncation, "
                    "no added BOS/EOS), averaged over samples")

    def to_dict(self) -> dict:
        return asdict(self)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()[:12]

    def describe(self) -> str:
        """One line: what is printed beside every result."""
        return (f"protocol {self.name} #{self.hash}: judge {self.judge} ({self.judge_dtype}), bos "
                f"{self.bos or 'none'}, max {self.max_length} tokens, {self.scored}, EOS: "
                f"{EOS_RULES[self.eos_rule]}; {self.aggregation}")


EOS_RULES = {
    "cut": "text cut after its first EOS; a sample shorter than max_length ends with one scored EOS (its own or "
           "appended); no padding scored",
    "mdlm": "EOS tokens not scored except the first one of the EOS-padded row (rows padded to the longest sample "
            "of the set); text after an EOS kept",
}


def check_judge_dtype(dtype: str) -> str:
    """The one check of a judge dtype (recipes check ``eval.judge_dtype`` against the same list)."""
    if dtype not in DTYPES:
        raise ConfigError(f"judge dtype {dtype!r} is not valid; choose {', '.join(DTYPES)}")
    return dtype


def make_protocol(name: str, judge: str, *, judge_dtype: str = "float32", max_length: int = 1024,
                  bos: Optional[str] = "default", eos: Optional[str] = "default") -> Protocol:
    """The named protocol for one judge. ``bos``/``eos`` default to the judge's entries in the tables above."""
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol: {name!r} is not valid; choose {' or '.join(PROTOCOLS)}")
    check_judge_dtype(judge_dtype)
    if max_length < 2:
        raise ConfigError(f"max judge length {max_length} is out of range; must be >= 2")
    if eos == "default":
        eos = JUDGE_EOS.get(judge)
    if name == "elf":
        if bos == "default":
            bos = JUDGE_BOS.get(judge)
        return Protocol("elf", judge, judge_dtype, bos=bos, eos=eos, max_length=max_length)
    # mdlm: the samples' own text only; MDLM's samples carry their BOS as literal text (decode without
    # skip_special_tokens), so nothing is added here.
    return Protocol("mdlm", judge, judge_dtype, bos=None, eos=eos, max_length=max_length, eos_rule="mdlm",
                    scored="every token after the first, except EOS tokens (see eos_rule)",
                    aggregation="token-weighted mean NLL over all samples, float64 (MDLM: float32); "
                                "PPL = exp(mean NLL)")


def with_judge_tokens(protocol: Protocol, *, eos: Optional[str]) -> Protocol:
    """Fill in the judge tokenizer's EOS when the table has none (done once the judge is loaded)."""
    return protocol if protocol.eos is not None else replace(protocol, eos=eos)
