"""The validation NELBO of an MDLM model: the training estimator (stratified t, SUBS, 1/t weight) over a
held-out split, token-weighted: nll = sum a·L / sum a over the whole split, ppl = exp(nll) (an upper bound on the
perplexity, in expectation), bpd = nll / ln 2. The draws are seeded (by batch), so a model's number repeats."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch


@torch.no_grad()
def validation_nelbo(model, objective, dataset, *, batch_size: int, device: torch.device, seed: int = 0,
                     max_examples: Optional[int] = None, log: Callable[[str], None] = lambda s: None) -> dict:
    n = len(dataset) if max_examples is None else min(len(dataset), max_examples)
    if n == 0:
        raise ValueError("the held-out split is empty")
    total, tokens = 0.0, 0
    model.eval()
    for b, start in enumerate(range(0, n, batch_size)):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        ids = torch.stack([it["input_ids"] for it in items]).to(device)
        am = torch.stack([it["attention_mask"] for it in items]).to(device)
        torch.manual_seed(seed * 1_000_003 + b)
        s = objective.token_terms(model, ids, am)
        total += float(s["loss"])
        tokens += int(s["valid"])
    nll = total / max(tokens, 1)
    return {"nll": nll, "ppl": math.exp(nll), "bpd": nll / math.log(2), "tokens": tokens, "examples": n}
