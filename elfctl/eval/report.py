"""Scoring samples end to end under a declared protocol — one results dict (what ``elfctl eval`` writes).

Programmatic entry point (what ``elfctl sample`` / ``elfctl ablate`` call)::

    from elfctl.eval.report import score_samples
    res = score_samples("runs/x/samples/s.jsonl", ["genppl", "diversity"], judge="builtin:smollm2-135m",
                        protocol="elf")
    res["rows"]["model"]["genppl"], res["rows"]["model"]["entropy"], res["protocol_hash"], res["judge_label"]

``samples``: a path, a :class:`~elfctl.eval.inputs.Samples`, or a list of them (one per seed: mean ± std over
seeds; one file: bootstrap 95% intervals). ``judge``: a source string or a loaded :class:`Judge`.
The results dict: ``{"protocol": {...}, "protocol_hash", "protocol_line", "judge", "judge_label", "inputs",
"header", "metrics", "rows": {"model": {...}, "data"?: {...}, "random"?: {...}}, "bleu"?, "rouge"?,
"diversity"?}``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Optional, Sequence, Union

from elfctl.errors import ConfigError
from elfctl.eval.inputs import Samples, check_pairs, read_references, read_samples
from elfctl.eval.judge import OFFLINE_JUDGE, Judge, judge_label

METRICS = ("genppl", "entropy", "bleu", "rouge", "diversity")


def parse_metrics(text: str) -> list[str]:
    """``genppl,bleu`` / ``all`` → metric names; unknown names are a one-line ConfigError listing the valid ones."""
    names = [m.strip().lower() for m in str(text).split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS and m != "all"]
    if bad or not names:
        raise ConfigError(f"--metric: {bad[0] if bad else text!r} is not valid; choose from "
                          f"{', '.join(METRICS)}, all (comma-separated)")
    if "all" in names:
        return list(METRICS)
    if "genppl" in names and "entropy" not in names:
        names.append("entropy")  # Gen PPL is never reported without entropy
    return list(dict.fromkeys(names))


def _as_samples(x: Union[str, Path, Samples]) -> Samples:
    return x if isinstance(x, Samples) else read_samples(Path(x))


def _ppl_row(texts: Sequence[str], judge: Judge, protocol, batch_size: int, bootstrap: int, seed: int,
             keep_per_sample: bool = True) -> dict:
    from elfctl.eval.genppl import aggregate, per_sample, score_texts
    from elfctl.eval.spread import bootstrap_mean, bootstrap_ppl

    scores = score_texts(texts, judge, protocol, batch_size=batch_size)
    row = aggregate(scores)
    row["genppl_ci95"] = list(bootstrap_ppl([s.nll_sum for s in scores], [s.n_scored for s in scores],
                                            resamples=bootstrap, seed=seed))
    row["entropy_ci95"] = list(bootstrap_mean([s.entropy for s in scores], resamples=bootstrap, seed=seed))
    if keep_per_sample:
        row["per_sample"] = per_sample(scores)
    return row


def _merge_seeds(per_seed: list[dict], keys: Sequence[str]) -> dict:
    """One row from one row per seed file: mean ± std (n - 1) of each key over seeds."""
    from elfctl.eval.spread import mean_std

    if len(per_seed) == 1:
        return per_seed[0]
    row = {"num_samples": sum(r.get("num_samples", 0) for r in per_seed), "seeds": len(per_seed)}
    for key in keys:
        vals = [r[key] for r in per_seed if r.get(key) is not None]
        if vals:
            row[key], row[f"{key}_std_over_seeds"] = mean_std(vals)
    if "scored_tokens" in per_seed[0]:
        row["scored_tokens"] = sum(r["scored_tokens"] for r in per_seed)
    row["per_seed"] = per_seed
    return row


def baseline_texts(run_cfg, n: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """(held-out data, random tokens), both through the model tokenizer's encode → decode round trip."""
    try:
        from elfctl.data.dataset import reference_texts
        from elfctl.data.tokenize import SequenceBuilder, decode_ids, load_tokenizer
    except ImportError as e:
        raise ConfigError(f"--baselines: the data layer cannot provide held-out text here ({e}); "
                          f"use --reference-text FILE") from None
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


def _bleu_ci(hyps: list[str], refs: list[str], resamples: int, seed: int) -> list[float]:
    """Bootstrap interval of corpus BLEU from per-sentence sufficient statistics (sacreBLEU's own recipe)."""
    import numpy as np

    from elfctl.eval.spread import NAN_PAIR, _indices, _percentiles

    if resamples <= 0 or len(hyps) < 2:
        return list(NAN_PAIR)
    try:
        import sacrebleu

        metric = sacrebleu.BLEU(lowercase=True, effective_order=True)
        stats = np.array(metric._extract_corpus_statistics(hyps, [refs]), dtype=np.int64)
        idx = _indices(len(hyps), resamples, seed)
        vals = np.array([metric._compute_score_from_stats(list(stats[row].sum(0))).score for row in idx])
        return list(_percentiles(vals, 0.95))
    except Exception:  # noqa: BLE001 - private sacreBLEU API; the interval is optional
        return list(NAN_PAIR)


def score_samples(samples, metrics: Sequence[str] = ("genppl", "entropy"), *,
                  judge: Union[str, Judge] = OFFLINE_JUDGE, protocol="elf", judge_dtype: str = "float32",
                  max_length: int = 1024, batch_size: int = 8, bootstrap: int = 1000, seed: int = 0,
                  references: Optional[Path] = None, reference_text: Optional[Path] = None, run_cfg=None,
                  baselines: bool = False, max_samples: Optional[int] = None,
                  keep_per_sample: bool = True) -> dict:
    """Score one samples file (or one per seed) with the given metrics; see the module docstring."""
    from elfctl.eval.protocol import Protocol, make_protocol, with_judge_tokens

    metrics = parse_metrics(",".join(metrics)) if not isinstance(metrics, str) else parse_metrics(metrics)
    files = [_as_samples(s) for s in (samples if isinstance(samples, (list, tuple)) else [samples])]
    if not files:
        raise ConfigError("no samples to score")
    if max_samples:
        files = [Samples(s.path, s.texts[:max_samples], s.header, s.references[:max_samples]) for s in files]
    judge_name = judge.name if isinstance(judge, Judge) else str(judge)
    proto = protocol if isinstance(protocol, Protocol) else make_protocol(protocol, judge_name,
                                                                          judge_dtype=judge_dtype,
                                                                          max_length=max_length)
    out: dict = {"inputs": [str(s.path) for s in files], "header": files[0].header, "metrics": list(metrics),
                 "judge": None, "judge_label": "no judge (no Gen PPL requested)", "rows": {}}
    if "genppl" in metrics or "entropy" in metrics:
        from elfctl.eval.judge import load_judge

        j = load_judge(judge, dtype=proto.judge_dtype)
        proto = with_judge_tokens(proto, eos=j.eos_token)
        out["judge"], out["judge_label"] = j.name, j.label
        per_seed = [_ppl_row(s.texts, j, proto, batch_size, bootstrap, seed, keep_per_sample) for s in files]
        out["rows"]["model"] = _merge_seeds(per_seed, ("genppl", "entropy", "mean_nll"))
        n = len(files[0].texts)
        ref_path = reference_text or (run_cfg.eval.reference_text if run_cfg is not None and
                                      getattr(run_cfg.eval, "reference_text", None) else None)
        if ref_path is not None:
            data = read_samples(Path(ref_path)).texts[:n]
            out["rows"]["data"] = _ppl_row(data, j, proto, batch_size, bootstrap, seed, keep_per_sample)
            out["rows"]["data"]["source"] = str(ref_path)
        if baselines:
            if run_cfg is None:
                raise ConfigError("--baselines needs the run's recipe (samples written by `elfctl sample`, with "
                                  "<run>/config.yaml); use --reference-text FILE instead")
            data, rand = baseline_texts(run_cfg, n, seed=seed)
            if "data" not in out["rows"]:
                out["rows"]["data"] = _ppl_row(data, j, proto, batch_size, bootstrap, seed, keep_per_sample)
                out["rows"]["data"]["source"] = "run dataset (held-out split, model tokenizer round trip)"
            out["rows"]["random"] = _ppl_row(rand, j, proto, batch_size, bootstrap, seed, keep_per_sample)
            out["rows"]["random"]["source"] = "uniform random model tokens, matched lengths"
    out["protocol"], out["protocol_hash"] = proto.to_dict(), proto.hash
    out["protocol_line"] = proto.describe()
    if "bleu" in metrics or "rouge" in metrics:
        from elfctl.eval.spread import bootstrap_mean, mean_std
        from elfctl.eval.text_metrics import bleu, rouge_per_sample

        ext_refs = read_references(references) if references else None
        bleus, rouges, cis = [], [], {}
        for s in files:
            hyps = s.texts
            if ext_refs is not None:
                refs = ext_refs
                check_pairs(hyps, refs, s.path, references)
            else:
                refs = s.references
                if not refs or any(r is None for r in refs):
                    raise ConfigError(f"{s.path}: samples have no 'reference' fields; pass --references FILE")
            if "bleu" in metrics:
                bleus.append(bleu(hyps, refs))
                if len(files) == 1:
                    cis["bleu_ci95"] = _bleu_ci(list(hyps), list(refs), min(bootstrap, 1000), seed)
            if "rouge" in metrics:
                per = rouge_per_sample(hyps, refs)
                rouges.append({k: sum(v) / max(len(v), 1) for k, v in per.items()})
                if len(files) == 1:
                    cis["rouge_ci95"] = {k: list(bootstrap_mean(v, resamples=bootstrap, seed=seed))
                                         for k, v in per.items()}
        if bleus:
            out["bleu"] = mean_std(bleus)[0]
            if len(bleus) > 1:
                out["bleu_std_over_seeds"] = mean_std(bleus)[1]
        if rouges:
            out["rouge"] = {k: mean_std([r[k] for r in rouges])[0] for k in rouges[0]}
            if len(rouges) > 1:
                out["rouge_std_over_seeds"] = {k: mean_std([r[k] for r in rouges])[1] for k in rouges[0]}
        out.update(cis)
    if "diversity" in metrics:
        from elfctl.eval.diversity import diversity

        per = [diversity(s.texts) for s in files]
        if len(per) == 1:
            out["diversity"] = per[0]
        else:
            from elfctl.eval.spread import mean_std

            scalar = [k for k, v in per[0].items() if isinstance(v, (int, float))]
            out["diversity"] = {k: mean_std([p[k] for p in per])[0] for k in scalar}
            out["diversity_std_over_seeds"] = {k: mean_std([p[k] for p in per])[1] for k in scalar}
            out["diversity_per_seed"] = per
    return out


def headline(results: dict) -> dict:
    """The few numbers a summary table shows (used by ``elfctl ablate``)."""
    row = results.get("rows", {}).get("model", {})
    out = {"genppl": row.get("genppl"), "entropy": row.get("entropy"), "judge": results.get("judge"),
           "protocol_hash": results.get("protocol_hash")}
    if "rouge" in results:
        out.update(results["rouge"])
    if "bleu" in results:
        out["bleu"] = results["bleu"]
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)
