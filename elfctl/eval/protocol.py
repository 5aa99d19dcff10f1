"""The scoring rules, declared as one object, printed with every result and hashed.

``elf`` (ELF-METHOD §5, the authors' evaluation): retokenize each sample's text with the judge's tokenizer
(no BOS added), truncate to ``max_length`` tokens, score every token after the first, count the first EOS and
no later padding, aggregate token-weighted NLL in float64, PPL = exp(mean NLL); fp32 judge.

``mdlm`` (MDLM / Duo's ``compute_generative_perplexity``): samples are scored whole — a text longer than the
judge context is split into consecutive ``max_length`` chunks, each scored after its first token — instead of
truncated; text after an EOS marker in the sample is kept. Use it to re-score sample files of those repositories.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Protocol:
    name: str
    judge: str
    judge_dtype: str = "float32"
    max_length: int = 1024
    retokenize: str = "judge tokenizer, no special tokens added"
    first_token: str = "unscored (scored: every token after the first)"
    long_samples: str = "truncate"          # truncate | chunk
    eos_rule: str = "cut at the first EOS, which is counted; no padding counted"
    aggregation: str = "token-weighted mean NLL in float64; PPL = exp(mean NLL)"
    entropy: str = "unigram entropy (nats) of each sample's judge tokens, averaged over samples"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def make_protocol(name: str, judge: str, *, judge_dtype: str = "float32", max_length: int = 1024) -> Protocol:
    if name == "elf":
        return Protocol("elf", judge, judge_dtype, max_length)
    if name == "mdlm":
        return Protocol("mdlm", judge, judge_dtype, max_length, long_samples="chunk",
                        eos_rule="text scored as given, EOS markers and all; no padding counted")
    from elfctl.errors import ConfigError

    raise ConfigError(f"--protocol: {name!r} is not valid; choose elf or mdlm")
