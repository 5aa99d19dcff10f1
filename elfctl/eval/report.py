"""Scoring samples end to end under a declared protocol — one results dict (what ``elfctl eval`` writes).

Programmatic entry point (what ``elfctl eval`` and ``elfctl ablate`` call)::

    from elfctl.eval.report import score_samples
    res = score_samples("runs/x/samples/s.jsonl", ["genppl", "diversity"], judge="builtin:smollm2-135m",
                        protocol="elf")
    res["rows"]["model"]["genppl"], res["rows"]["model"]["entropy"], res["protocol_hash"], res["judge_label"]

``samples``: a path, a :class:`~elfctl.eval.inputs.Samples`, or a list of them (one per seed: mean ± std over
seeds; one file: bootstrap 95% intervals). ``judge``: a source string or a loaded :class:`Judge`.
The results dict: ``{"inputs", "header", "metrics", "notes", "rows": {"model": {...}, "data"?: {...},
"random"?: {...}}, "protocol"?, "protocol_hash"?, "protocol_line"?, "judge"?, "judge_label"?, "bleu"?, "rouge"?,
"diversity"?}``. The protocol and judge keys are there only when Gen PPL or entropy was scored: BLEU, ROUGE and
diversity do not depend on a judge. Entropy alone needs the judge's tokenizer, never its weights.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from elfctl.errors import ConfigError
from elfctl.eval.inputs import Samples, check_pairs, read_references, read_samples
from elfctl.eval.judge import OFFLINE_JUDGE, Judge

METRICS = ("genppl", "entropy", "bleu", "rouge", "diversity")
OVERLAP = ("bleu", "rouge")     # need references; `all` skips them (with a note) when there are none
MODEL_METRICS = ("nelbo",)      # about the model that drew the samples (its likelihood bound), not in `all`


def parse_metrics(text: str) -> list[str]:
    """``genppl,bleu`` / ``all`` → metric names; unknown names are a one-line ConfigError listing the valid ones."""
    names = [m.strip().lower() for m in str(text).split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS + MODEL_METRICS and m != "all"]
    if bad or not names:
        raise ConfigError(f"--metric: {bad[0] if bad else text!r} is not valid; choose from "
                          f"{', '.join(METRICS + MODEL_METRICS)}, all (comma-separated)")
    if "all" in names:
        return list(METRICS) + [m for m in names if m in MODEL_METRICS]
    if "genppl" in names and "entropy" not in names:
        names.append("entropy")  # Gen PPL is never reported without entropy
    return list(dict.fromkeys(names))


def _asked_all(metrics) -> bool:
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    return any(str(m).strip().lower() == "all" for m in names)


def _as_samples(x: Union[str, Path, Samples]) -> Samples:
    return x if isinstance(x, Samples) else read_samples(Path(x))


# --------------------------------------------------------------------------- Gen PPL and entropy rows

@dataclass
class _Scorer:
    """What scores one list of texts: the whole judge (Gen PPL + entropy) or its tokenizer alone (entropy)."""

    judge: Judge                # model is None when only the tokenizer was loaded
    protocol: object
    batch_size: int
    bootstrap: int
    seed: int
    keep_per_sample: bool

    @property
    def genppl(self) -> bool:
        return self.judge.model is not None

    def row(self, texts: Sequence[str]) -> dict:
        """Gen PPL (when the judge model is loaded) and entropy of one list of texts, with bootstrap intervals."""
        row = self._row_with_samples(texts)
        if not self.keep_per_sample:
            row.pop("per_sample")
        return row

    def _row_with_samples(self, texts: Sequence[str]) -> dict:
        from elfctl.eval.spread import bootstrap_mean, bootstrap_ppl

        if self.genppl:
            from elfctl.eval.genppl import aggregate, per_sample, score_texts

            scores = score_texts(texts, self.judge, self.protocol, batch_size=self.batch_size)
            row = aggregate(scores)
            row["genppl_ci95"] = list(bootstrap_ppl([s.nll_sum for s in scores], [s.n_scored for s in scores],
                                                    resamples=self.bootstrap, seed=self.seed))
            per = per_sample(scores)
            entropies = per["entropy"]
        else:
            from elfctl.eval.genppl import prepare_rows, unigram_entropy

            rows = prepare_rows(texts, self.judge, self.protocol)  # the protocol's truncation, no model call
            entropies = [unigram_entropy(r.text_ids) for r in rows]
            row = {"entropy": math.fsum(entropies) / len(entropies) if entropies else float("nan"),
                   "num_samples": len(entropies), "judge_tokens": sum(len(r.text_ids) for r in rows)}
            per = {"entropy": entropies}
        row["entropy_ci95"] = list(bootstrap_mean(entropies, resamples=self.bootstrap, seed=self.seed))
        row["per_sample"] = per
        return row

    def merged(self, texts_per_seed: Sequence[Sequence[str]], keys: Sequence[str]) -> dict:
        """One row for one or more seed files: mean ± std over seeds and, for several, intervals of the pool."""
        per_seed = [self._row_with_samples(texts) for texts in texts_per_seed]
        row = _merge_seeds(per_seed, keys)
        if len(per_seed) > 1:
            row.update(_pooled(per_seed, resamples=self.bootstrap, seed=self.seed))
        if not self.keep_per_sample:
            for r in per_seed:
                r.pop("per_sample", None)
        return row


def _pooled(per_seed: list[dict], *, resamples: int, seed: int) -> dict:
    """The seeds' samples as one set (the draws are independent whatever their seed): token-weighted Gen PPL and
    mean entropy over all of them, each with a bootstrap 95% interval that resamples samples across the pool."""
    from elfctl.eval.spread import bootstrap_mean, bootstrap_ppl

    per = [r["per_sample"] for r in per_seed]
    entropies = [e for p in per for e in p["entropy"]]
    out = {"entropy_pooled_ci95": list(bootstrap_mean(entropies, resamples=resamples, seed=seed))}
    if all("nll_sum" in p for p in per):
        nll = [x for p in per for x in p["nll_sum"]]
        counts = [c for p in per for c in p["n_scored"]]
        out["genppl_pooled"] = math.exp(math.fsum(nll) / sum(counts)) if sum(counts) else float("nan")
        out["genppl_pooled_ci95"] = list(bootstrap_ppl(nll, counts, resamples=resamples, seed=seed))
    return out


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


def _load_scorer(judge: Union[str, Judge], protocol, *, genppl: bool, device: Optional[str], batch_size: int,
                 bootstrap: int, seed: int, keep_per_sample: bool) -> _Scorer:
    """The judge with its weights for Gen PPL; for entropy alone, its tokenizer only."""
    from elfctl.eval.protocol import with_judge_tokens

    if genppl:
        from elfctl.eval.judge import load_judge

        j = load_judge(judge, dtype=protocol.judge_dtype, **({"device": device} if device else {}))
    elif isinstance(judge, Judge):
        j = Judge(judge.name, None, judge.tokenizer)
    else:
        from elfctl.eval.judge_tokenizer import load_judge_tokenizer

        j = Judge(str(judge), None, load_judge_tokenizer(str(judge)))
    return _Scorer(j, with_judge_tokens(protocol, eos=j.eos_token), batch_size, bootstrap, seed, keep_per_sample)


def _score_judge_rows(out: dict, files: list[Samples], scorer: _Scorer, *, reference_text, run_cfg,
                      baselines: bool) -> None:
    """rows.model (one row per seed file, merged), and the data / random-token rows beside it."""
    keys = ("genppl", "entropy", "mean_nll") if scorer.genppl else ("entropy",)
    out["rows"]["model"] = scorer.merged([s.texts for s in files], keys)
    n = len(files[0].texts)
    ref_path = reference_text or (run_cfg.eval.reference_text if run_cfg is not None and
                                  getattr(run_cfg.eval, "reference_text", None) else None)
    if ref_path is not None:
        data = read_samples(Path(ref_path), "--reference-text").texts[:n]
        out["rows"]["data"] = {**scorer.row(data), "source": str(ref_path)}
    if baselines:
        if run_cfg is None:
            raise ConfigError("--baselines needs the run's recipe (samples written by `elfctl sample`, with "
                              "<run>/config.yaml); use --reference-text FILE instead")
        data, rand = baseline_texts(run_cfg, n, seed=scorer.seed)
        if "data" not in out["rows"]:
            out["rows"]["data"] = {**scorer.row(data),
                                   "source": "run dataset (held-out split, model tokenizer round trip)"}
        out["rows"]["random"] = {**scorer.row(rand), "source": "uniform random model tokens, matched lengths"}
    proto = scorer.protocol
    out.update({"judge": scorer.judge.name, "judge_label": scorer.judge.label, "protocol": proto.to_dict(),
                "protocol_hash": proto.hash, "protocol_line": proto.describe()})


# --------------------------------------------------------------------------- BLEU / ROUGE

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


def _reference_pairs(files: list[Samples], references: Optional[Path],
                     max_samples: Optional[int] = None) -> Optional[list[tuple[Samples, list]]]:
    """(samples, references) per file; None when the samples carry no references and none were given.
    ``max_samples`` cuts the references like the samples (the first ones)."""
    if references is not None:
        ext = read_references(references, "--references")[:max_samples or None]
        for s in files:
            check_pairs(s.texts, ext, s.path, references)
        return [(s, ext) for s in files]
    if any(not s.references or any(r is None for r in s.references) for s in files):
        return None
    return [(s, s.references) for s in files]


def _score_overlap(out: dict, files: list[Samples], metrics: Sequence[str], *, references, optional: bool,
                   bootstrap: int, seed: int, note: Callable[[str], None], max_samples: Optional[int] = None) -> None:
    """BLEU and/or ROUGE against the samples' references (or --references)."""
    from elfctl.eval.spread import bootstrap_mean, mean_std
    from elfctl.eval.text_metrics import bleu, rouge_per_sample

    asked = [m for m in OVERLAP if m in metrics]
    pairs = _reference_pairs(files, references, max_samples)
    if pairs is None:
        missing = next(s for s in files if not s.references or any(r is None for r in s.references))
        if optional:
            note(f"{' and '.join(m.upper() for m in asked)} skipped: {missing.path} has no references (an "
                 f"unconditional run has nothing to compare against; pass --references FILE to score them)")
            return
        raise ConfigError(f"--metric {','.join(asked)}: {missing.path}: samples have no 'reference' fields; "
                          f"pass --references FILE")
    single = len(pairs) == 1
    bleus, rouges = [], []
    for s, refs in pairs:
        if "bleu" in asked:
            bleus.append(bleu(s.texts, refs))
            if single:
                out["bleu_ci95"] = _bleu_ci(list(s.texts), list(refs), min(bootstrap, 1000), seed)
        if "rouge" in asked:
            per = rouge_per_sample(s.texts, refs)
            rouges.append({k: sum(v) / max(len(v), 1) for k, v in per.items()})
            if single:
                out["rouge_ci95"] = {k: list(bootstrap_mean(v, resamples=bootstrap, seed=seed))
                                     for k, v in per.items()}
    if bleus:
        out["bleu"] = mean_std(bleus)[0]
        if len(bleus) > 1:
            out["bleu_std_over_seeds"] = mean_std(bleus)[1]
    if rouges:
        out["rouge"] = {k: mean_std([r[k] for r in rouges])[0] for k in rouges[0]}
        if len(rouges) > 1:
            out["rouge_std_over_seeds"] = {k: mean_std([r[k] for r in rouges])[1] for k in rouges[0]}


# --------------------------------------------------------------------------- diversity

def _score_diversity(out: dict, files: list[Samples]) -> None:
    from elfctl.eval.diversity import diversity
    from elfctl.eval.spread import mean_std

    per = [diversity(s.texts) for s in files]
    if len(per) == 1:
        out["diversity"] = per[0]
        return
    scalar = [k for k, v in per[0].items() if isinstance(v, (int, float))]
    out["diversity"] = {k: mean_std([p[k] for p in per])[0] for k in scalar}
    out["diversity_std_over_seeds"] = {k: mean_std([p[k] for p in per])[1] for k in scalar}
    out["diversity_per_seed"] = per


# --------------------------------------------------------------------------- the whole report

def _load_files(samples, max_samples: Optional[int]) -> list[Samples]:
    files = [_as_samples(s) for s in (samples if isinstance(samples, (list, tuple)) else [samples])]
    if not files:
        raise ConfigError("no samples to score")
    if max_samples:
        files = [Samples(s.path, s.texts[:max_samples], s.header, s.references[:max_samples], s.format,
                         s.inputs[:max_samples]) for s in files]
    return files


def score_samples(samples, metrics: Union[str, Sequence[str]] = ("genppl", "entropy"), *,
                  judge: Union[str, Judge] = OFFLINE_JUDGE, protocol="elf", judge_dtype: str = "float32",
                  max_length: int = 1024, batch_size: int = 8, bootstrap: int = 1000, seed: int = 0,
                  references: Optional[Path] = None, reference_text: Optional[Path] = None, run_cfg=None,
                  baselines: bool = False, max_samples: Optional[int] = None, keep_per_sample: bool = True,
                  device: Optional[str] = None) -> dict:
    """Score one samples file (or one per seed) with the given metrics; see the module docstring.

    ``metrics`` is a list of names or the ``--metric`` text; with ``all``, BLEU/ROUGE are skipped (with a note
    in ``notes``) when there are no references. ``device``: where the judge runs (default: load_judge's).
    """
    from elfctl.eval.protocol import Protocol, make_protocol

    names = parse_metrics(metrics if isinstance(metrics, str) else ",".join(metrics))
    files = _load_files(samples, max_samples)
    out: dict = {"inputs": [str(s.path) for s in files], "input_formats": [s.format for s in files],
                 "header": files[0].header, "metrics": names, "notes": [], "rows": {}}
    if "genppl" in names or "entropy" in names:
        judge_name = judge.name if isinstance(judge, Judge) else str(judge)
        proto = protocol if isinstance(protocol, Protocol) else make_protocol(
            protocol, judge_name, judge_dtype=judge_dtype, max_length=max_length)
        scorer = _load_scorer(judge, proto, genppl="genppl" in names, device=device, batch_size=batch_size,
                              bootstrap=bootstrap, seed=seed, keep_per_sample=keep_per_sample)
        _score_judge_rows(out, files, scorer, reference_text=reference_text, run_cfg=run_cfg, baselines=baselines)
    if any(m in names for m in OVERLAP):
        _score_overlap(out, files, names, references=references, optional=_asked_all(metrics),
                       bootstrap=bootstrap, seed=seed, note=out["notes"].append, max_samples=max_samples)
    if "diversity" in names:
        _score_diversity(out, files)
    if "nelbo" in names:
        _score_nelbo(out, files, device=device)
    return out


def _score_nelbo(out: dict, files: list[Samples], *, device: Optional[str]) -> None:
    """The likelihood bound of the (first) file's model; a family without one gets a note, not a number."""
    from elfctl.eval.likelihood import has_likelihood, score_likelihood

    family = files[0].header.get("family", "elf")
    if not has_likelihood(family):
        out["notes"].append(f"nelbo: model.family {family} has no likelihood bound")
        return
    out["nelbo"] = score_likelihood(files[0].header, device=device)


def headline(results: dict) -> dict:
    """The few numbers a summary table shows (used by ``elfctl ablate``)."""
    row = results.get("rows", {}).get("model", {})
    out = {"genppl": row.get("genppl"), "genppl_ci95": row.get("genppl_ci95"), "entropy": row.get("entropy"),
           "entropy_ci95": row.get("entropy_ci95"), "genppl_std": row.get("genppl_std_over_seeds"),
           "entropy_std": row.get("entropy_std_over_seeds"), "genppl_pooled_ci95": row.get("genppl_pooled_ci95"),
           "entropy_pooled_ci95": row.get("entropy_pooled_ci95"), "judge": results.get("judge"),
           "protocol_hash": results.get("protocol_hash")}
    if "rouge" in results:
        out.update(results["rouge"])
    if "bleu" in results:
        out["bleu"] = results["bleu"]
    if "diversity" in results:  # its numbers (distinct_n, repetition, ...), not the length histogram
        out.update({k: v for k, v in results["diversity"].items() if isinstance(v, (int, float))})
    if "nelbo" in results:
        out["val_nelbo_ppl"] = results["nelbo"]["ppl"]
    out["metrics"] = results.get("metrics")
    return out
