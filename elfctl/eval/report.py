"""Scoring a samples file end to end, with baselines, spread and the declared protocol — one results dict.

``score_samples(...)`` is what ``elfctl eval`` and ``elfctl ablate`` call. The results dict:
``{"protocol": {...}, "protocol_hash", "judge", "judge_label", "inputs": [paths], "rows": {"model": {...},
"data": {...}?, "random": {...}?}, "bleu"?, "rouge"?, "diversity"?}``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Optional

from elfctl.errors import ConfigError
from elfctl.eval.inputs import Samples, read_references

METRICS = ("genppl", "entropy", "bleu", "rouge", "diversity")


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if "all" in names:
        return list(METRICS)
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ConfigError(f"--metric: {bad[0] if bad else text!r} is not valid; choose from "
                          f"{', '.join(METRICS)}, all (comma-separated)")
    return names


def _ppl_row(texts: list[str], judge, protocol, batch_size: int, bootstrap: int) -> dict:
    from elfctl.eval.genppl import aggregate, score_texts
    from elfctl.eval.spread import bootstrap_ci

    scores = score_texts(texts, judge, protocol, batch_size=batch_size)
    row = aggregate(scores)

    def ppl(ss):
        n = sum(s.n_scored for s in ss)
        return math.exp(sum(s.nll_sum for s in ss) / n) if n else float("nan")

    row["genppl_ci95"] = list(bootstrap_ci(scores, ppl, resamples=bootstrap))
    row["entropy_ci95"] = list(bootstrap_ci(scores, lambda ss: sum(s.entropy for s in ss) / len(ss),
                                            resamples=bootstrap))
    return row


def baseline_texts(run_cfg, n: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """(held-out data, random tokens), both through the model's tokenize → decode round trip."""
    from elfctl.data.dataset import reference_texts
    from elfctl.data.tokenize import SequenceBuilder, decode_ids, load_tokenizer

    tok = load_tokenizer(run_cfg.encoder, run_cfg.data.data_dir)
    records = reference_texts(run_cfg, n=n)
    builder = SequenceBuilder(tok, run_cfg.data)
    data, lengths = [], []
    for r in records:
        item = builder.text(r["text"]) if "text" in r else builder.pair(r["input"], r["output"])
        ids = item["input_ids"][~item["cond_mask"]].tolist()
        data.append(decode_ids(tok, ids))
        lengths.append(int((item["attention_mask"] & ~item["cond_mask"]).sum()) - 1)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    rng = random.Random(seed)
    rand = [decode_ids(tok, [rng.choice(vocab) for _ in range(max(k, 1))]) for k in lengths]
    return data, rand


def score_samples(samples: list[Samples], metrics: list[str], *, judge_source: str, protocol_name: str = "elf",
                  judge_dtype: str = "float32", batch_size: int = 8, bootstrap: int = 1000,
                  references: Optional[Path] = None, reference_text: Optional[Path] = None, run_cfg=None,
                  baselines: bool = False, log=print) -> dict:
    from elfctl.eval.protocol import make_protocol

    protocol = make_protocol(protocol_name, judge_source, judge_dtype=judge_dtype)
    out: dict = {"protocol": protocol.to_dict(), "protocol_hash": protocol.hash, "judge": judge_source,
                 "inputs": [str(s.path) for s in samples], "header": samples[0].header, "rows": {}}
    if "genppl" in metrics or "entropy" in metrics:
        from elfctl.eval.judge import load_judge

        judge = load_judge(judge_source, dtype=judge_dtype)
        out["judge_label"] = judge.label
        per_seed = [_ppl_row(s.texts, judge, protocol, batch_size, bootstrap) for s in samples]
        row = dict(per_seed[0])
        if len(per_seed) > 1:
            from elfctl.eval.spread import mean_std

            for key in ("genppl", "entropy"):
                m, sd = mean_std([r[key] for r in per_seed])
                row[key], row[f"{key}_std_over_seeds"] = m, sd
            row["per_seed"] = per_seed
            row["num_samples"] = sum(r["num_samples"] for r in per_seed)
        out["rows"]["model"] = row
        n = len(samples[0].texts)
        if reference_text is not None:
            from elfctl.eval.inputs import read_samples

            out["rows"]["data"] = _ppl_row(read_samples(reference_text).texts[:n], judge, protocol, batch_size,
                                           bootstrap)
        if baselines:
            if run_cfg is None:
                raise ConfigError("--baselines needs the run's recipe (samples written by `elfctl sample`, with "
                                  "<run>/config.yaml); use --reference-text FILE instead")
            data, rand = baseline_texts(run_cfg, n)
            if "data" not in out["rows"]:
                out["rows"]["data"] = _ppl_row(data, judge, protocol, batch_size, bootstrap)
            out["rows"]["random"] = _ppl_row(rand, judge, protocol, batch_size, bootstrap)
    if "bleu" in metrics or "rouge" in metrics:
        from elfctl.eval.text_metrics import bleu, rouge

        hyps = samples[0].texts
        refs = read_references(references) if references else [r for r in samples[0].references]
        if any(r is None for r in refs):
            raise ConfigError(f"{samples[0].path}: samples have no 'reference' fields; pass --references FILE")
        if len(refs) != len(hyps):
            raise ConfigError(f"{len(hyps)} hypotheses but {len(refs)} references; they must match one to one")
        if "bleu" in metrics:
            out["bleu"] = bleu(hyps, refs)
        if "rouge" in metrics:
            out["rouge"] = rouge(hyps, refs)
    if "diversity" in metrics:
        from elfctl.eval.diversity import diversity

        out["diversity"] = diversity(samples[0].texts)
    return out


def headline(results: dict) -> dict:
    """The few numbers a summary table shows."""
    row = results.get("rows", {}).get("model", {})
    out = {"genppl": row.get("genppl"), "entropy": row.get("entropy"), "judge": results.get("judge")}
    if "rouge" in results:
        out.update(results["rouge"])
    if "bleu" in results:
        out["bleu"] = results["bleu"]
    return out
