"""Generative perplexity and entropy of text samples under a judge LM, by the rules of a :class:`Protocol`.

Each sample becomes one judge row (``prepare_rows``) and a 0/1 weight per predicted position. Rows are batched by
length and right-padded; the attention mask hides padding and position ids count from 0 in every row, so a
position's NLL depends on its own sample only: results do not depend on batch size or padding (tested with
batch 1 vs 3 on mixed lengths). Token NLLs are computed from float64 log-softmax and summed in float64 per sample
(kept for the bootstrap); the corpus number is token-weighted: PPL = exp(sum NLL / sum tokens).
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from elfctl.eval.judge import Judge
from elfctl.eval.protocol import Protocol

LOGIT_CHUNK = 256  # positions per float64 log-softmax (bounds memory: 256 x vocab x 8 bytes)


@dataclass
class SampleScore:
    nll_sum: float      # summed NLL (nats) of the scored tokens, float64
    n_scored: int       # tokens scored
    entropy: float      # unigram entropy (nats) of the sample's judge tokens
    n_tokens: int       # the sample's own judge tokens after truncation (no added BOS/EOS)

    @property
    def ppl(self) -> float:
        return math.exp(self.nll_sum / self.n_scored) if self.n_scored else float("nan")


@dataclass
class Row:
    ids: list[int]          # what the judge reads: [BOS] text-tokens [EOS]
    weights: list[int]      # len(ids) - 1 entries: 1 where the token ids[j + 1] is scored
    text_ids: list[int]     # the sample's own tokens (for entropy)


def unigram_entropy(ids: Sequence[int]) -> float:
    """-sum p log p (nats) of the token frequencies in one sample; 0 for an empty sample."""
    if not ids:
        return 0.0
    n = len(ids)
    return -math.fsum(c / n * math.log(c / n) for c in Counter(ids).values())


def prepare_rows(texts: Sequence[str], judge: Judge, protocol: Protocol) -> list[Row]:
    """Apply the protocol's retokenization, BOS, EOS and length rules (no model call)."""
    L = protocol.max_length
    eos = judge.token_id(protocol.eos or judge.eos_token)
    encoded = [judge.encode(t) for t in texts]
    rows = []
    if protocol.eos_rule == "cut":
        bos = [judge.token_id(protocol.bos)] if protocol.bos else []
        for ids in encoded:
            cut = eos is not None and eos in ids
            if cut:
                ids = ids[: ids.index(eos) + 1]        # the first EOS counts; nothing after it does
            row = (bos + ids)[:L]
            text_ids = row[len(bos):]
            if eos is not None and len(row) < L and not (cut and row[-1] == eos):
                row = row + [eos]                      # the sample ended: its end is scored as one EOS
            rows.append(Row(row, [1] * max(len(row) - 1, 0), text_ids))
    elif protocol.eos_rule == "mdlm":
        truncated = [ids[:L] for ids in encoded]
        longest = max((len(ids) for ids in truncated), default=0)
        for ids in truncated:
            # MDLM pads every row with EOS to the longest of the set; only the first pad can ever be counted.
            row = ids + [eos] if eos is not None and len(ids) < longest else list(ids)
            weights, seen = [], 0
            for j, t in enumerate(row):
                seen += t == eos
                if j >= 1:
                    weights.append(int(t != eos or seen == 1))   # non-EOS tokens, and the row's first EOS
            rows.append(Row(row, weights, list(ids)))
    else:  # pragma: no cover - Protocol is built by make_protocol
        raise ValueError(f"unknown eos rule {protocol.eos_rule}")
    return rows


def _accepts_position_ids(model) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "position_ids" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def score_rows(rows: Sequence[Row], judge: Judge, *, batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed NLL, scored tokens) per row."""
    import torch

    from elfctl.precision import ieee_fp32

    model = judge.model
    try:
        device = next(model.parameters()).device
    except (StopIteration, AttributeError):
        device = torch.device("cpu")
    pass_positions = _accepts_position_ids(model)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    todo = [i for i, r in enumerate(rows) if len(r.ids) >= 2 and any(r.weights)]
    todo.sort(key=lambda i: len(rows[i].ids))  # similar lengths together: less padding
    for start in range(0, len(todo), batch_size):
        group = todo[start:start + batch_size]
        width = max(len(rows[i].ids) for i in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        weights = torch.zeros(len(group), width - 1, dtype=torch.float64)
        for r, i in enumerate(group):
            n = len(rows[i].ids)
            ids[r, :n] = torch.tensor(rows[i].ids)
            mask[r, :n] = 1
            weights[r, : n - 1] = torch.tensor(rows[i].weights, dtype=torch.float64)
        kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if pass_positions:
            kwargs["position_ids"] = torch.arange(width, device=device).expand(len(group), width)
        # the judge's dtype is part of the protocol and TF32 is not: full fp32 matmuls, whatever a training or
        # sampling command before it in this process applied (elfctl.precision)
        with torch.inference_mode(), ieee_fp32():
            logits = model(**kwargs).logits[:, :-1]
            targets = ids[:, 1:].to(device)
            nll = torch.empty(len(group), width - 1, dtype=torch.float64, device=device)
            for c in range(0, width - 1, LOGIT_CHUNK):
                lg = logits[:, c:c + LOGIT_CHUNK].to(torch.float64)
                tgt = targets[:, c:c + LOGIT_CHUNK].unsqueeze(-1)
                nll[:, c:c + LOGIT_CHUNK] = (torch.logsumexp(lg, -1) - lg.gather(-1, tgt).squeeze(-1))
        w = weights.to(device)
        sums = torch.where(w > 0, nll * w, torch.zeros_like(nll)).sum(-1).tolist()  # padding never reaches a sum
        counts = w.sum(-1).tolist()
        for r, i in enumerate(group):
            out[i] = (float(sums[r]), int(round(counts[r])))
    return out


def score_texts(texts: Sequence[str], judge: Judge, protocol: Protocol, *, batch_size: int = 8) -> list[SampleScore]:
    """Per-sample NLL sums, token counts and entropies under ``protocol``."""
    rows = prepare_rows(texts, judge, protocol)
    scored = score_rows(rows, judge, batch_size=batch_size)
    return [SampleScore(s, n, unigram_entropy(r.text_ids), len(r.text_ids)) for r, (s, n) in zip(rows, scored)]


def corpus_ppl(scores: Sequence[SampleScore]) -> float:
    n = sum(s.n_scored for s in scores)
    return math.exp(math.fsum(s.nll_sum for s in scores) / n) if n else float("nan")


def mean_entropy(scores: Sequence[SampleScore]) -> float:
    return math.fsum(s.entropy for s in scores) / len(scores) if scores else float("nan")


def aggregate(scores: Sequence[SampleScore]) -> dict:
    total_n = sum(s.n_scored for s in scores)
    mean_nll = math.fsum(s.nll_sum for s in scores) / total_n if total_n else float("nan")
    return {"genppl": math.exp(mean_nll) if total_n else float("nan"), "mean_nll": mean_nll,
            "scored_tokens": total_n, "entropy": mean_entropy(scores), "num_samples": len(scores),
            "judge_tokens": sum(s.n_tokens for s in scores)}


def per_sample(scores: Sequence[SampleScore]) -> dict:
    """The per-sample numbers the results JSON keeps (for a later bootstrap or paired comparison)."""
    return {"nll_sum": [s.nll_sum for s in scores], "n_scored": [s.n_scored for s in scores],
            "entropy": [s.entropy for s in scores]}


def genppl(texts: Sequence[str], judge: Judge, protocol: Optional[Protocol] = None, *,
           batch_size: int = 8) -> dict:
    """Convenience: aggregate Gen PPL + entropy of ``texts`` (protocol ``elf`` for the judge by default)."""
    from elfctl.eval.protocol import make_protocol

    protocol = protocol or make_protocol("elf", judge.name)
    return aggregate(score_texts(texts, judge, protocol, batch_size=batch_size))
