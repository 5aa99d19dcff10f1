"""Progressive distillation: the rounds of ``elfctl distill``, each one ordinary training run of the trainer.

Round k trains an N_k-step student (``distill.rounds``) with :class:`~elfctl.distill_objective.DistillObjective`
against the ORIGINAL teacher (never the previous student). Layout::

    <train.run_dir>/round1-16step/   a complete run directory (config.yaml with the student's sample settings,
    <train.run_dir>/round2-8step/    checkpoints, metrics.jsonl): `elfctl sample --run` / `elfctl eval` take it
    ...                              distill_round.json says where its teacher and initial weights came from

Round 1 starts from the teacher's weights, round k > 1 from round k − 1's final EMA weights; each round has a
fresh optimiser, lr schedule (warm-up over distill.warmup_fraction, then the recipe's schedule), step counter and
EMA (restarted from the loaded weights). Every round resumes from its own checkpoints, so after a kill the same
command continues exactly where it stopped; finished rounds are skipped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from elfctl.atomic import atomic_write_json
from elfctl.config import Config, config_differences, config_from_dict
from elfctl.errors import ConfigError
from elfctl.sampling.student import ROUND_META  # a round's marker: sampling reads it too
from elfctl.rundir import checkpoint as ckpt
from elfctl.train.compiled import compile_blocks, is_compiled
from elfctl.train.distributed import init_distributed
from elfctl.train.loggers import read_metrics

# Model keys that do not change the weights: a teacher trained with other values is still the same network.
WEIGHTLESS_MODEL_KEYS = ("model.dropout", "model.gradient_checkpointing")


@dataclass(frozen=True)
class Round:
    index: int          # 1-based
    student_steps: int  # N
    sub_steps: int      # K = teacher_steps / N
    run_dir: Path

    @property
    def name(self) -> str:
        return (f"round {self.index} ({self.student_steps}-step student, {self.sub_steps} teacher "
                f"sub-step{'' if self.sub_steps == 1 else 's'})")


def plan_rounds(cfg: Config) -> list[Round]:
    """The rounds of a distillation recipe, in order."""
    root = cfg.resolved_run_dir()
    d = cfg.distill
    return [Round(i + 1, n, d.teacher_steps // n, root / f"round{i + 1}-{n}step") for i, n in enumerate(d.rounds)]


def round_lengths(cfg: Config, num_examples: Optional[int] = None) -> list[int]:
    """Optimizer steps of each round, in order: distill.round_steps, or distill.round_epochs (default 1) of the
    training set at train.batch_size; either is one value for every round or a list of one per round.
    ``num_examples`` is needed only for epoch-based lengths."""
    d = cfg.distill

    def each_round(value):
        return list(value) if isinstance(value, list) else [value] * len(d.rounds)

    if d.round_steps is not None:
        return each_round(d.round_steps)
    if num_examples is None:
        raise ValueError("round_lengths: epoch-based round lengths need the training set's size")
    epochs = each_round(d.round_epochs if d.round_epochs is not None else 1.0)
    return [max(1, math.ceil(e * num_examples / cfg.train.batch_size)) for e in epochs]


def round_config(cfg: Config, rnd: Round, steps: int) -> Config:
    """The training config of one round: its run directory and length, warm-up, no dropout, and the student's
    sampler settings (so ``elfctl sample --run <round>`` uses them by default)."""
    data = cfg.to_dict()
    data["train"].update(run_dir=str(rnd.run_dir), steps=steps)
    data["optim"]["warmup_steps"] = math.ceil(cfg.distill.warmup_fraction * steps)
    for section, key in (("train", "epochs"), ("optim", "warmup_epochs")):  # the round's length is in steps
        if key in data[section]:
            data[section][key] = None
    data["model"]["dropout"] = 0.0
    data["sample"].update(cfg.distill.samplers[rnd.student_steps])
    data["sample"]["steps"] = rnd.student_steps
    data["description"] = f"{cfg.name}: {rnd.name}"
    return config_from_dict(data)


@dataclass
class Teacher:
    model: torch.nn.Module
    cfg: Config
    checkpoint: Path
    step: int


def load_teacher(cfg: Config) -> Teacher:
    """The frozen teacher of ``distill.teacher`` (EMA weights unless distill.teacher_ema is false), checked to be
    the recipe's network on the recipe's encoder."""
    from elfctl.sampling.loading import load_for_sampling

    if cfg.model.family != "elf":
        raise ConfigError(f"model.family: {cfg.model.family} models are not distilled; progressive distillation "
                          f"halves the steps of ELF's ODE (model.family elf)")
    ref = cfg.distill.teacher
    if not ref:
        raise ConfigError("distill.teacher: not set; give the teacher's run directory, e.g. "
                          "distill.teacher=runs/quickstart")
    if not Path(ref).exists():
        raise ConfigError(f"distill.teacher: {ref} does not exist (train it first, e.g. `elfctl train quickstart`, "
                          f"or point distill.teacher at a run or checkpoint directory)")
    if Path(ref).is_file():
        raise ConfigError(f"distill.teacher: {ref} is a file; give a run directory or a checkpoint directory")
    loaded = load_for_sampling(ref, ema=cfg.distill.teacher_ema, with_text=False)
    t = loaded.cfg
    own, want = t.to_dict(), cfg.to_dict()
    diffs = config_differences({k: own[k] for k in ("model", "encoder")}, {k: want[k] for k in ("model", "encoder")},
                               ignore=WEIGHTLESS_MODEL_KEYS)
    if diffs:
        path, a, b = diffs[0]
        raise ConfigError(f"distill.teacher: {loaded.checkpoint} is not this recipe's network: {path} {a!r} (teacher) "
                          f"vs {b!r} (recipe); "
                          f"the student copies the teacher, so the recipe must describe the same model and encoder")
    model = loaded.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(model, t, loaded.checkpoint, int(loaded.meta.get("step") or 0))


def _round_done(rnd: Round, steps: int) -> Optional[int]:
    """The final step of a round that has reached ``steps``, else None."""
    latest = ckpt.latest_checkpoint(rnd.run_dir)
    if latest is None:
        return None
    step = int(ckpt.read_meta(latest)["step"])
    return step if step >= steps else None


def _check_round_meta(rnd: Round, meta: dict) -> None:
    """A round resumed by a later command must keep its teacher and its starting weights."""
    path = rnd.run_dir / ROUND_META
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    for key in ("teacher_checkpoint", "init_from", "student_steps", "teacher_sub_steps"):
        if old.get(key) != meta.get(key):
            raise ConfigError(f"cannot resume {rnd.run_dir}: it was started with {key} {old.get(key)!r}, now "
                              f"{meta.get(key)!r}; restore that, pass --new for a new directory, or set train.run_dir")


def round_loss_trend(run_dir: Path) -> Optional[tuple[float, float]]:
    """(start, end) of a round's distillation loss: the mean x-space L2 of the first and last quarter of its
    logged steps (None with fewer than 4 logged steps)."""
    l2 = [float(m["l2"]) for m in read_metrics(run_dir) if isinstance(m.get("l2"), (int, float))]
    if len(l2) < 4:
        return None
    q = len(l2) // 4
    return sum(l2[:q]) / q, sum(l2[-q:]) / q


def report_round_trend(rnd: Round, log: Callable[[str], None]) -> None:
    """One line on how the round's distillation loss moved. It is printed, not judged: round 1 starts at the
    teacher itself, where the loss is already near its floor, so any update raises it a little (docs/RESULTS.md,
    "Progressive distillation", has curves of good and bad rounds)."""
    trend = round_loss_trend(rnd.run_dir)
    if trend is not None:
        log(f"{rnd.name}: distillation loss (x-space L2) {trend[0]:.4g} over the first quarter of the round, "
            f"{trend[1]:.4g} over the last")


def _shared_data_source(cfg: Config, log: Callable[[str], None]):
    """One data source for every round (built on first use). A frozen encoder's latent cache of the teacher's run
    is reused when it matches the recipe; otherwise ``data.precompute_latents`` encodes once into
    <train.run_dir>/latents."""
    from elfctl.train.trainer import DataSource

    holder: dict = {}

    def build(c: Config, run_dir: Path, device: torch.device):
        if holder.get("device") != device:
            holder["data"], holder["device"] = DataSource(c, cfg.resolved_run_dir(), device, log=log), device
        return holder["data"]

    return build


def teacher_latent_cache(cfg: Config, teacher: Teacher) -> Optional[str]:
    """The teacher run's latent cache when this recipe would precompute the same latents (else None)."""
    if cfg.data.latent_cache or not cfg.data.precompute_latents or cfg.encoder.mode == "learned":
        return None
    cache = teacher.checkpoint.parent.parent / "latents"
    if not (cache / "manifest.json").is_file():
        return None
    from elfctl.data.cache import LatentCacheDataset, check_manifest

    try:
        check_manifest(LatentCacheDataset(cache).manifest, cfg)
    except ConfigError:
        return None
    return str(cache)


def run_distillation(cfg: Config, *, only_round: Optional[int] = None, new: bool = False,
                     log: Callable[[str], None] = print, data_source: Optional[Callable] = None) -> list[Path]:
    """Run every round in order (or only round ``only_round``, 1-based); returns the round run directories.

    ``new`` (``--new``, as for ``elfctl train``): every round goes under a new directory beside an existing
    train.run_dir (runs/NAME-2, ...) instead of resuming it. ``data_source`` (tests) replaces the shared
    :class:`~elfctl.train.trainer.DataSource`.
    """
    from elfctl.distill_objective import DistillObjective
    from elfctl.rundir.directory import new_run_dir
    from elfctl.train.trainer import Trainer

    if new:
        root = new_run_dir(cfg.resolved_run_dir())
        cfg = config_from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "run_dir": str(root)}})

    if cfg.data.task != "unconditional":
        raise ConfigError(f"data.task: distillation is unconditional (the authors' released curriculum); the "
                          f"recipe has {cfg.data.task!r}")
    rounds = plan_rounds(cfg)
    if only_round is not None and not 1 <= only_round <= len(rounds):
        raise ConfigError(f"--round: {only_round} is out of range; this recipe has rounds 1..{len(rounds)} "
                          f"(distill.rounds {cfg.distill.rounds})")
    teacher = load_teacher(cfg)
    log(f"teacher: {teacher.checkpoint} (step {teacher.step}, {'EMA' if cfg.distill.teacher_ema else 'raw'} "
        f"weights, {cfg.distill.teacher_steps} steps over [0, 1])")
    cache = teacher_latent_cache(cfg, teacher)
    if cache is not None:
        cfg = config_from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "latent_cache": cache}})
        log(f"latents: reusing the teacher's cache {cache}")
    build_data = data_source or _shared_data_source(cfg, log)
    if cfg.distill.round_steps is not None:
        lengths = round_lengths(cfg)
    else:  # an epoch-based length needs the training set's size
        _, device = init_distributed(cfg.train.device, cfg.train.dist_timeout_min)
        lengths = round_lengths(cfg, len(build_data(cfg, cfg.resolved_run_dir(), device).dataset))
    todo = rounds if only_round is None else [rounds[only_round - 1]]
    for rnd in todo:
        steps = lengths[rnd.index - 1]
        done = _round_done(rnd, steps)
        if done is not None:
            log(f"{rnd.name}: done at step {done} ({rnd.run_dir})")
            continue
        if rnd.index == 1:
            init_from = str(teacher.checkpoint) + (":ema" if cfg.distill.teacher_ema else ":model")
            init_state = lambda: {k: v.detach().cpu().clone() for k, v in teacher.model.state_dict().items()}  # noqa: E731
        else:
            prev = rounds[rnd.index - 2]
            if _round_done(prev, lengths[prev.index - 1]) is None:
                raise ConfigError(f"--round {rnd.index}: round {prev.index} ({prev.run_dir}) is not finished; run "
                                  f"it first (without --round, every round runs in order)")
            prev_ckpt = ckpt.latest_checkpoint(prev.run_dir)
            init_from = f"{prev_ckpt}:ema"
            init_state = lambda p=prev_ckpt: ckpt.load_tensors(p, "ema")  # noqa: E731
        rcfg = round_config(cfg, rnd, steps)
        meta = {"round": rnd.index, "student_steps": rnd.student_steps, "teacher_sub_steps": rnd.sub_steps,
                "teacher_steps": cfg.distill.teacher_steps, "teacher_checkpoint": str(teacher.checkpoint),
                "teacher_ema": cfg.distill.teacher_ema, "init_from": init_from, "steps": steps}
        _check_round_meta(rnd, meta)
        if int(os.environ.get("RANK", "0")) == 0:
            rnd.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(rnd.run_dir / ROUND_META, meta)
        log(f"{rnd.name}: {steps} step{'' if steps == 1 else 's'} from {init_from} -> {rnd.run_dir}")

        def objective(c: Config, data, device: torch.device, rnd: Round = rnd) -> DistillObjective:
            model = teacher.model.to(device)
            if c.train.compile and not is_compiled(model.blocks[0]):
                # the teacher's K sub-steps are most of a round's forward passes: its blocks compiled in place as
                # the student's are (train.compile), once for every round
                compile_blocks(model)
            return DistillObjective(c.objective, model, student_steps=rnd.student_steps,
                                    teacher_steps=c.distill.teacher_steps, prediction=c.model.prediction,
                                    teacher_prediction=teacher.cfg.model.prediction,
                                    use_sc_cfg=c.model.num_sc_cfg_tokens > 0, pad_token=c.data.pad_token,
                                    sub_step_schedule=c.distill.sub_step_schedule, teacher_bf16=c.train.bf16)

        Trainer(rcfg, log=log, data_source=build_data, objective=objective, init_weights=init_state).run()
        if int(os.environ.get("RANK", "0")) == 0:
            report_round_trend(rnd, log)
    return [r.run_dir for r in rounds]
