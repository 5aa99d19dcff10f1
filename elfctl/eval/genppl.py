"""Generative perplexity and entropy of text samples under a judge LM, by the rules of a Protocol.

Batches are right-padded with an attention mask; each position's NLL depends only on its own sample, so the
result does not depend on batch size or padding (tested). Sums are kept per sample (float64) for the
bootstrap interval.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch

from elfctl.eval.judge import Judge
from elfctl.eval.protocol import Protocol


@dataclass
class SampleScore:
    nll_sum: float      # summed NLL (nats) of the scored tokens
    n_scored: int       # tokens scored
    entropy: float      # unigram entropy (nats) of the sample's judge tokens
    n_tokens: int       # judge tokens of the sample (after truncation)


def judge_chunks(text: str, judge: Judge, protocol: Protocol) -> list[list[int]]:
    ids = judge.tokenizer(text, add_special_tokens=False)["input_ids"]
    L = protocol.max_length
    if protocol.long_samples == "chunk":
        return [ids[i:i + L] for i in range(0, len(ids), L)] or [[]]
    eos = judge.eos_id
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos) + 1]  # the first EOS counts; nothing after it does
    return [ids[:L]]


def unigram_entropy(ids: list[int]) -> float:
    if not ids:
        return 0.0
    counts = Counter(ids)
    n = len(ids)
    return -sum(c / n * math.log(c / n) for c in counts.values())


@torch.no_grad()
def score_texts(texts: list[str], judge: Judge, protocol: Protocol, *, batch_size: int = 8) -> list[SampleScore]:
    chunks = [judge_chunks(t, judge, protocol) for t in texts]
    flat = [(i, c) for i, cs in enumerate(chunks) for c in cs]
    nll = [0.0] * len(texts)
    n_scored = [0] * len(texts)
    device = next(judge.model.parameters()).device
    order = sorted(range(len(flat)), key=lambda k: len(flat[k][1]))  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        group = [flat[k] for k in order[start:start + batch_size]]
        width = max(len(c) for _, c in group)
        if width < 2:
            continue  # nothing after the first token to score
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for r, (_, c) in enumerate(group):
            ids[r, : len(c)] = torch.tensor(c)
            mask[r, : len(c)] = 1
        logits = judge.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.double()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok_nll = -logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        valid = mask[:, 1:].to(device).bool()
        sums = (tok_nll * valid).sum(-1).tolist()
        counts = valid.sum(-1).tolist()
        for r, (i, _) in enumerate(group):
            nll[i] += sums[r]
            n_scored[i] += counts[r]
    out = []
    for i, cs in enumerate(chunks):
        all_ids = [t for c in cs for t in c]
        out.append(SampleScore(nll[i], n_scored[i], unigram_entropy(all_ids), len(all_ids)))
    return out


def aggregate(scores: list[SampleScore]) -> dict:
    total_nll = sum(s.nll_sum for s in scores)
    total_n = sum(s.n_scored for s in scores)
    mean_nll = total_nll / total_n if total_n else float("nan")
    return {"genppl": math.exp(mean_nll) if total_n else float("nan"), "mean_nll": mean_nll,
            "scored_tokens": total_n, "entropy": sum(s.entropy for s in scores) / max(len(scores), 1),
            "num_samples": len(scores)}
