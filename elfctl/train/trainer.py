"""The training loop: setup → (resume) → steps → checkpoints, on one CPU or many GPUs.

Reads a validated :class:`~elfctl.config.Config`; everything it writes goes into the run directory (see
``elfctl.rundir.checkpoint``). Rank 0 logs and checkpoints; every rank computes its own shards
(``elfctl.data.order``). Under torchrun the network is replicated with DDP, or sharded with FSDP2 when
``train.fsdp`` is true (``elfctl.train.fsdp``).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
from torch.utils.data import default_collate

from elfctl.atomic import atomic_write_text
from elfctl.config import Config, load_resolved
from elfctl.errors import ConfigError, ElfRuntimeError
from elfctl.family import family_entry, load_family
from elfctl.model import count_parameters
from elfctl.rundir import checkpoint as ckpt
from elfctl.train import fsdp
from elfctl.rundir import directory as rundir
from elfctl.train.compiled import compile_blocks
from elfctl.train.distributed import DistInfo, all_reduce_mean, init_distributed
from elfctl.train.length import TrainLength, resolve_length
from elfctl.train.optim import EMA, Optimizers
from elfctl.data.loader import device_batches, training_loader
from elfctl.train.loggers import Loggers, check_available, parse_loggers, read_metrics
from elfctl.data.order import BatchOrder, shard_seed
from elfctl.train.stop import GracefulStop



def _all_reduce_grads(module: nn.Module, world_size: int) -> None:
    """Mean of each parameter's gradient over the ranks (one flat all-reduce)."""
    import torch.distributed as dist

    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_metrics: dict
    checkpoint: Optional[Path]


@dataclass
class _RunState:
    """What one training run holds between its named steps (built by ``Trainer._build``)."""

    data: "DataSource"
    model: nn.Module
    modules: list                      # the network, plus a learned encoder
    opt: Optimizers
    ema: EMA
    order: BatchOrder
    objective: Callable
    lr: float
    length: TrainLength                # steps, warm-up and how they were resolved
    latest: Optional[Path]             # the checkpoint resumed from
    train_model: Callable              # the trained pass (DDP-wrapped, or FSDP's gathered forward)
    helper_model: Callable             # the objective's no-grad helper passes
    forward: Optional[object] = None   # FSDP: gathers the weights once per micro-step
    ddp: bool = False
    params: list = field(default_factory=list)  # trainable parameters (after sharding), for the clip
    step: int = 0
    accum: int = 1                     # micro-steps per optimizer step on each rank (train.micro_batch_size)
    first_bad: Optional[torch.Tensor] = None  # first step with a non-finite loss, kept on the device

    @property
    def total(self) -> int:
        return self.length.steps


class TokenSpace(nn.Module):
    """What a family that trains on token ids has in place of an encoder: the vocabulary it models, no latents.
    ``vocab_size`` counts an appended [MASK] row when the family needs one (:func:`elfctl.families.vocabulary`)."""

    latent_dim = None
    trainable = False

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size


class DataSource:
    """Tokenizer, encoder and the map-style training set (tokenized text, or a latent cache).

    A family whose batches are token ids alone (``FamilyEntry.data == "tokens"``) gets no encoder (a
    :class:`TokenSpace`), no latent cache, and ``latents()`` gives None."""

    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, log: Callable[[str], None] = print):
        from elfctl.data.encoders import build_encoder
        from elfctl.data.tokenize import load_tokenizer

        data_dir = cfg.data.data_dir
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.encoder, data_dir=data_dir)
        self.needs_latents = family_entry(cfg.model.family).data == "latents"
        if self.needs_latents:
            self.encoder = build_encoder(cfg.encoder, self.tokenizer, data_dir=data_dir).to(device)
        else:
            self.encoder = TokenSpace(load_family(cfg.model.family).vocab_size(self.tokenizer))
        self.trainable_encoder = bool(getattr(self.encoder, "trainable", False))
        self._tokens = None
        if self.needs_latents:
            from elfctl.data.encoders import encode_precision

            # one encoding precision for the run's every latent: on the fly, label-drop re-encodes, the cache
            self.encoder.set_precision(encode_precision(not self.trainable_encoder, device, cfg.train.bf16))
        self.encode_bf16 = self.needs_latents and self.encoder.precision == "bf16-autocast"
        if cfg.data.precompute_latents and self.needs_latents:
            self._precompute(cfg, run_dir, device, log)
        self.cache_path = self._cache_path(cfg, run_dir) if self.needs_latents else None
        if self.cache_path is not None:
            from elfctl.data.cache import LatentCacheDataset, check_manifest

            self.dataset = LatentCacheDataset(self.cache_path)
            check_manifest(self.dataset.manifest, cfg)
            made = self.dataset.manifest.get("encode_precision", "fp32")
            if made != self.encoder.precision:  # its latents stand; say that they differ from this run's
                log(f"warning: latent cache {self.cache_path} was encoded in {made}; this run encodes in "
                    f"{self.encoder.precision} (label-drop re-encodes); rebuild it for one precision throughout")
        else:
            self.dataset = self._tokenized(cfg, log)
            if self.needs_latents:
                log(f"latents: encoded per batch on {device}" + (" in bf16" if self.encode_bf16 else ""))
        if len(self.dataset) == 0:
            raise ConfigError(f"data.dataset: '{cfg.data.dataset}' gave no training examples")

    def _tokenized(self, cfg: Config, log: Callable[[str], None]):
        """The memory-mapped tokenized training set; rank 0 builds the on-disk cache while the others wait."""
        from elfctl.data.dataset import build_dataset


        if self._tokens is None:
            dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
            first = not dist_on or torch.distributed.get_rank() == 0
            if not first:
                torch.distributed.barrier()
            self._tokens = build_dataset(cfg, cfg.data.train_split, self.tokenizer, data_dir=cfg.data.data_dir,
                                         log=log)
            stats = getattr(self._tokens, "stats", None)
            if stats is not None:  # truncation is never silent: how many examples were cut, and which part
                log(f"training set: {len(self._tokens)} examples; {stats.summary(cfg.data)}")
            if dist_on and first:
                torch.distributed.barrier()
        return self._tokens

    def _precompute(self, cfg: Config, run_dir: Path, device: torch.device, log: Callable[[str], None]) -> None:
        """``data.precompute_latents``: encode the training set into <run_dir>/latents (rank 0; others wait),
        unless that cache would be larger than ``data.max_latent_cache_gb``."""
        from elfctl.data.encode_latents import encode_to_cache, latent_cache_gb

        if self.trainable_encoder or cfg.data.latent_cache:
            why = "a learned encoder's latents change while training" if self.trainable_encoder else \
                "data.latent_cache is set"
            log(f"data.precompute_latents: skipped ({why})")
            return
        size = latent_cache_gb(len(self._tokenized(cfg, log)), cfg.data.max_length, self.encoder.latent_dim)
        if size > cfg.data.max_latent_cache_gb and not (run_dir / "latents" / "manifest.json").is_file():
            log(f"data.precompute_latents: the latent cache would take {size:.1f} GB (> data.max_latent_cache_gb "
                f"{cfg.data.max_latent_cache_gb:g}); encoding each batch on {device} instead"
                + (" in bf16" if self.encode_bf16 else ""))
            return
        log(f"data.precompute_latents: caching the latents ({size:.2f} GB) in {run_dir / 'latents'}")
        dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not dist_on or torch.distributed.get_rank() == 0:
            r = encode_to_cache(cfg, run_dir / "latents", split=cfg.data.train_split, device=device,
                                encoder=self.encoder, tokenizer=self.tokenizer, echo=log, progress=False)
            if r.encoded_now:
                log(f"encoded {r.encoded_now} examples ({r.tokens} tokens) in {r.seconds:.1f}s "
                    f"({r.tokens / max(r.seconds, 1e-9):.0f} tok/s) -> {r.path}")
        if dist_on:
            torch.distributed.barrier()

    def _cache_path(self, cfg: Config, run_dir: Path) -> Optional[Path]:
        if cfg.encoder.mode == "learned":
            if cfg.data.latent_cache:
                raise ConfigError("data.latent_cache: a learned encoder changes its latents while training; "
                                  "remove data.latent_cache (latents are computed on the fly)")
            return None
        if cfg.data.latent_cache:
            path = Path(cfg.data.latent_cache)
            if not (path / "manifest.json").is_file():
                raise ConfigError(f"data.latent_cache: no latent cache at {path} (build it with `elfctl encode`)")
            return path
        default = run_dir / "latents"
        return default if (default / "manifest.json").is_file() else None

    def batch(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        items = [self.dataset[i] for i in indices]
        keep = ("input_ids", "attention_mask", "cond_mask", "latents")
        batch = default_collate([{k: v for k, v in it.items() if k in keep} for it in items])
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def latents(self, batch: dict, drop: Optional[torch.Tensor]) -> torch.Tensor:
        """Clean normalised latents of a batch; re-encodes label-dropped rows of a cache. None for a family that
        trains on the token ids alone."""
        from elfctl.data.tokenize import encoder_attention_mask

        if not self.needs_latents:
            return None

        ids, am, cm = batch["input_ids"], batch["attention_mask"].bool(), batch["cond_mask"].bool()
        grad = torch.enable_grad() if self.trainable_encoder else torch.no_grad()
        if "latents" in batch:
            x = batch["latents"].float()
            if drop is not None and bool(drop.any()):  # drop: (B,) bool on the CPU, so no device sync here
                rows = drop.nonzero().squeeze(1).to(ids.device, non_blocking=True)
                with torch.no_grad():
                    enc = self.encoder(ids[rows], encoder_attention_mask(am[rows], cm[rows], drop.to(ids.device)[rows]))
                x = x.index_copy(0, rows, enc.float())
            return x
        # a frozen encoder on CUDA runs under bf16 autocast, as the authors encode (train.bf16)
        with grad, torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.encode_bf16):
            drop = None if drop is None else drop.to(ids.device, non_blocking=True)
            return self.encoder(ids, encoder_attention_mask(am, cm, drop)).float()


class Trainer:
    command = "train"  # named in the run directory's lock

    def __init__(self, cfg: Config, *, fresh: bool = False, new: bool = False, log: Callable[[str], None] = print,
                 data_source: Optional[Callable[[Config, Path, torch.device], "DataSource"]] = None,
                 objective: Optional[Callable[[Config, "DataSource", torch.device], Callable]] = None,
                 init_weights: Optional[Callable[[], dict]] = None):
        """``data_source`` builds the data (default :class:`DataSource`); tests pass synthetic ones.

        ``objective`` builds the loss (default: the ELF objective of the recipe; ``elfctl distill`` passes its
        distillation objective). ``init_weights`` gives the network's starting weights (a state dict) for a run
        that has no checkpoint yet; the optimiser and the EMA then start from them. A resumed run ignores it.
        """
        self.cfg = cfg
        self.data_source = data_source or (lambda c, r, d: DataSource(c, r, d, log=self._log))
        self.objective_factory = objective
        self.init_weights = init_weights
        self.fresh = fresh
        self.log_line = log
        self.info, self.device = init_distributed(cfg.train.device, cfg.train.dist_timeout_min)
        fsdp.check_config(cfg, self.info.world_size)
        check_available(parse_loggers(cfg.train.loggers))  # a missing optional package: one line, before any work
        self.sharded = bool(cfg.train.fsdp)  # FSDP2 (check_config: only under torchrun with >= 2 ranks)
        self.run_dir = cfg.resolved_run_dir()
        if new:  # --new: a new directory beside an existing run (its config records where it went)
            self.run_dir = rundir.new_run_dir(self.run_dir)
            cfg.train.run_dir = str(self.run_dir)
        self._stop = GracefulStop()
        self._length_change: dict[str, tuple] = {}  # set by _prepare_run_dir: length keys changed on a resume

    # ------------------------------------------------------------------ setup
    def _log(self, msg: str) -> None:
        if self.info.is_main:
            self.log_line(msg)

    def _prepare_run_dir(self) -> Optional[Path]:
        """The checkpoint to resume from (the newest intact one), after refusing a config that differs."""
        latest = ckpt.newest_intact_checkpoint(self.run_dir, warn=lambda m: self._log(f"warning: {m}"))
        if latest is not None and self.fresh:
            raise ConfigError(f"train.run_dir: {self.run_dir} already holds checkpoints and --fresh refuses to "
                              f"resume; pick another train.run_dir, pass --new, or remove that directory")
        self._length_change = rundir.check_same_config(self.run_dir, self.cfg, latest)
        return latest

    def _trim_metrics(self, step: int) -> None:
        """Drop metric lines written after the checkpoint we resume from (they will be recomputed)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.info.is_main or not path.is_file():
            return
        keep = [m for m in read_metrics(self.run_dir) if m.get("step", 0) <= step]  # stops at a torn last line
        atomic_write_text(path, "".join(json.dumps(m) + "\n" for m in keep))

    # ------------------------------------------------------------------ main
    def run(self) -> TrainResult:
        """Train holding the run directory's lock; SIGTERM/SIGINT end it at a step boundary with a checkpoint."""
        with rundir.claimed(self.run_dir, command=self.command, log=self._log, is_main=self.info.is_main), \
                self._stop:
            return self._run()

    def _run(self) -> TrainResult:
        from elfctl import precision

        # the one precision policy of every command (bf16 autocast and TF32 on CUDA), applied before any pass
        self.precision = precision.apply(precision.policy(self.device, self.cfg.train.bf16))
        if self.device.type == "cpu":
            from elfctl.cpu_allocator import keep_freed_memory

            keep_freed_memory()
        latest = self._prepare_run_dir()
        s = self._build(latest)          # data, network, optimisers, EMA, batch order, objective
        self._resume_or_start(s)         # weights and optimiser state of the newest intact checkpoint
        self._extend(s)                  # a longer train.steps / train.epochs than the run's: record it
        self._announce(s)                # the run's config on disk, one summary line
        self._wrap_for_parallel(s)       # compile blocks; DDP or FSDP forwards
        if s.total <= s.step:
            self._log(f"nothing to do: run is at step {s.step} >= train.steps {s.total}")
            return TrainResult(self.run_dir, s.step, {}, latest)
        return self._loop(s)

    def _build(self, latest: Optional[Path]) -> "_RunState":
        cfg, info, device = self.cfg, self.info, self.device
        data = self.data_source(cfg, self.run_dir, device)
        torch.manual_seed(cfg.train.seed)  # model init is the same on every rank
        family = load_family(cfg.model.family)
        model = family.build_network(cfg, latent_dim=data.encoder.latent_dim,
                                     vocab_size=data.encoder.vocab_size).to(device)
        if latest is None and self.init_weights is not None:
            ckpt.load_state_dict_strict(model, self.init_weights(), what="the initial weights")
        modules: list[nn.Module] = [model] + ([data.encoder] if data.trainable_encoder else [])
        objective = (self.objective_factory(cfg, data, device) if self.objective_factory is not None
                     else family.objective(cfg, data, device))
        accum = self._micro_batch(model, data, device).grad_accum  # train.micro_batch_size -> grad_accum
        shards = info.world_size * accum
        if self.sharded:  # before the optimizers and the EMA: sharding replaces the parameters
            fsdp.shard(model, device, info.world_size, data.encoder if data.trainable_encoder else None,
                       bf16=cfg.train.bf16 and device.type == "cuda")
        lr = cfg.optim.peak_lr(cfg.train.batch_size)
        length = resolve_length(cfg.train, cfg.optim, len(data.dataset))  # train.epochs -> steps
        opt = Optimizers(cfg.optim, modules, lr=lr, total_steps=length.steps, warmup_steps=length.warmup_steps)
        warmup = cfg.optim.ema_warmup
        ema = (fsdp.ShardedEMA(model, cfg.optim.ema_decay, info.is_main, warmup=warmup) if self.sharded
               else EMA(model, cfg.optim.ema_decay, warmup=warmup))
        order = BatchOrder(len(data.dataset), cfg.train.batch_size, shards, cfg.train.seed)
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        return _RunState(data=data, model=model, modules=modules, opt=opt, ema=ema, order=order,
                         objective=objective, lr=lr, length=length, latest=latest, train_model=model,
                         helper_model=model, params=params, accum=accum)

    def _micro_batch(self, model: nn.Module, data: "DataSource", device: torch.device):
        """The per-rank micro-batch (``elfctl.train.micro_batch``): ``auto`` probes this GPU before any step."""
        from elfctl.train import micro_batch

        cfg = self.cfg
        fits = None
        if cfg.train.micro_batch_size == "auto" and device.type == "cuda":
            if not data.needs_latents:
                raise ConfigError(f"train.micro_batch_size: auto probes the memory of an ELF step only; give a "
                                  f"number for model.family {cfg.model.family} (e.g. train.micro_batch_size=32)")
            from elfctl.objective import ElfObjective

            # the base objective's step (a distillation step saves no more: its teacher passes keep nothing for
            # backward, and the teacher's weights are already on the GPU when this runs)
            fits = micro_batch.cuda_probe(
                model, ElfObjective.from_config(cfg), latent_dim=data.encoder.latent_dim,
                vocab=data.encoder.vocab_size, length=cfg.data.max_length, device=device, bf16=cfg.train.bf16,
                log=self._log)
        mb = micro_batch.resolve(cfg.train.micro_batch_size, cfg.train.grad_accum, cfg.train.batch_size,
                                 self.info.world_size, device_type=device.type, fits=fits)
        if fits is not None and self.info.enabled:  # every rank must accumulate alike: the smallest fit wins
            mb = micro_batch.agree(mb, cfg.train.batch_size // self.info.world_size, device)
        self._log(f"micro-batch {mb.micro} per rank x grad_accum {mb.grad_accum} x world size "
                  f"{self.info.world_size} = global batch {cfg.train.batch_size} ({mb.how})")
        self.micro = mb
        return mb

    def _resume_or_start(self, s: "_RunState") -> None:
        if s.latest is not None:
            s.step = self._restore(s.latest, s.model, s.ema, s.opt, s.data)
            self._trim_metrics(s.step)
            self._log(f"resumed {self.run_dir} from step {s.step}")
        else:
            self._trim_metrics(0)

    def _extend(self, s: "_RunState") -> None:
        """Only the length keys differ from the run's saved config: continue it to the new length, on record."""
        changed = self._length_change
        if not changed or s.total <= s.step:
            return  # same length, or the run already got there ("nothing to do" below)
        saved = load_resolved(rundir.saved_config_path(self.run_dir, s.latest))
        old = resolve_length(saved.train, saved.optim, len(s.data.dataset)).steps
        if self.info.is_main:
            rundir.record_length_change(self.run_dir, self.cfg, changed, at_step=s.step, old_steps=old,
                                        new_steps=s.total)
        keys = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        self._log(f"extending {self.run_dir}: {keys}; {old} -> {s.total} steps, continuing from step {s.step} "
                  f"(recorded in {rundir.LENGTH_CHANGES_NAME})")
        if self.cfg.optim.schedule == "cosine":
            self._log("note: optim.schedule cosine decays over the new length, so the lr rises again from here")

    def _announce(self, s: "_RunState") -> None:
        cfg, info = self.cfg, self.info
        if info.is_main:  # setup succeeded: the run now exists, with the config it is trained with
            rundir.write_run_config(self.run_dir, cfg)
        self._log(f"model {cfg.model.preset}: {count_parameters(s.model) / 1e6:.2f}M parameters; "
                  f"{len(s.data.dataset)} training examples; lr {s.lr:.2e}; device {self.device}; "
                  f"world size {info.world_size}" + ("; FSDP" if self.sharded else "")
                  + f"; precision {self.precision.label}"
                  + (f"; latent cache {s.data.cache_path}" if s.data.cache_path else ""))
        self._log(s.length.describe())
        if s.length.warning():
            self._log(s.length.warning())

    def _wrap_for_parallel(self, s: "_RunState") -> None:
        """``train_model`` runs the trained pass, ``helper_model`` the objective's no-grad helper passes."""
        if self.cfg.train.compile:
            # per block, in place, inside DDP/FSDP: keeps their overlap and no data-dependent shape in a graph
            compile_blocks(s.model)
        s.ddp = self.info.enabled and not self.sharded
        if self.sharded:
            s.forward = fsdp.FsdpForward(s.model)
            s.train_model, s.helper_model = s.forward.train, s.forward.helper
        elif s.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            device = self.device
            s.train_model = DDP(s.model, device_ids=[device.index] if device.type == "cuda" else None)

    def _loop(self, s: "_RunState") -> TrainResult:
        cfg, info, device = self.cfg, self.info, self.device
        window = self._window = _Window(device, getattr(self, "_resumed_window", None))
        s.first_bad = torch.tensor(-1, device=device)
        last_ckpt, last_metrics = s.latest, {}
        progress = _Progress(s.total, s.step, enabled=info.is_main)
        metric_sinks = Loggers(cfg, self.run_dir, start_step=s.step, enabled=info.is_main, log=self._log)
        # one DataLoader for the rest of the run, cut in (step, shard) order from the resume step on
        batches = device_batches(training_loader(
            s.data.dataset, s.order, start=s.step, stop=s.total, rank=info.rank, grad_accum=s.accum,
            num_workers=cfg.data.num_workers, prefetch_factor=cfg.data.prefetch_factor,
            pin_memory=device.type == "cuda"), device)
        s.model.train()
        try:
            while s.step < s.total:
                cur_lr = s.opt.set_step(s.step)
                self._optimizer_step(s, batches, window)
                step = s.step
                is_log = step % cfg.train.log_every == 0 or step == s.total
                is_save = step % cfg.train.save_every == 0 or step == s.total
                if is_log or is_save:
                    self._check_finite(s.first_bad)
                if is_log:
                    last_metrics = window.flush(step, cur_lr, info, s.order.epoch_of(step))
                    if info.is_main:
                        metric_sinks.log(last_metrics, step)  # metrics.jsonl, and tensorboard / wandb if chosen
                        progress.update(step, last_metrics, self._log)
                if is_save:
                    last_ckpt = self._save(step, s.model, s.ema, s.opt, s.data)
                # SIGTERM/Ctrl-C. Under torchrun the ranks agree through an all-reduce, a host sync: only on log and
                # save steps, which sync anyway (a stop waits at most train.log_every steps there)
                check_stop = not info.enabled or is_log or is_save
                if check_stop and self._stop.requested(info.enabled, device) and step < s.total:
                    if not is_save:
                        last_ckpt = self._save(step, s.model, s.ema, s.opt, s.data)
                    raise self._stop.stopped(step, last_ckpt)
        finally:
            progress.close()
            metric_sinks.close()
        self._log(f"done: step {s.step}, checkpoint {last_ckpt}")
        return TrainResult(self.run_dir, s.step, last_metrics, last_ckpt)

    def _optimizer_step(self, s: "_RunState", batches, window: "_Window") -> None:
        """grad_accum micro-steps (each seeded by (seed, step, shard)), clip, update, EMA; ``s.step`` += 1."""
        cfg, info, device = self.cfg, self.info, self.device
        accum, step, data = s.accum, s.step, s.data
        use_bf16 = self.precision.bf16  # the policy applied at start (elfctl.precision)
        for micro in range(accum):
            shard = info.rank * accum + micro
            batch = next(batches)  # = the examples of order.indices(step, shard)
            torch.manual_seed(shard_seed(cfg.train.seed, step, shard))
            drop = None  # drawn on the CPU: choosing the rows to re-encode never waits for the device
            if cfg.data.task == "conditional" and cfg.objective.label_drop_prob > 0:
                drop = torch.rand(batch["input_ids"].shape[0]) < cfg.objective.label_drop_prob
            x = data.latents(batch, drop)
            if drop is not None:
                drop = drop.to(device, non_blocking=True)
            sync = (contextlib.nullcontext() if micro == accum - 1 or not s.ddp else s.train_model.no_sync())
            if s.forward is not None:
                s.forward.begin()  # FSDP: gather the weights once for all of this micro-step's passes
            with sync, torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = s.objective(s.train_model, x, batch["input_ids"], batch["attention_mask"],
                                  batch["cond_mask"], drop_cond=drop, helper_model=s.helper_model)
                (out.loss / accum).backward()
            window.add(out, batch["input_ids"].numel())
            s.first_bad = torch.where((s.first_bad < 0) & ~torch.isfinite(out.loss.detach()),
                                      torch.full((), step + 1, device=device), s.first_bad)  # no host copy
        if s.ddp and data.trainable_encoder:
            # DDP wraps only the network: average the learned encoder's gradients by hand
            _all_reduce_grads(data.encoder, info.world_size)
        params = s.params
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip) if cfg.optim.grad_clip > 0
                     else torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if self.sharded:
            grad_norm = fsdp.full(grad_norm)  # a DTensor under FSDP
        window.grad_norm += grad_norm.detach().float()
        s.opt.step()
        s.opt.zero_grad()
        s.ema.update(s.model, count=s.step + 1)
        s.step += 1
        window.steps += 1

    # ------------------------------------------------------------------ helpers
    def _check_finite(self, first_bad: torch.Tensor) -> None:
        bad = first_bad.clone()
        if self.info.enabled:
            import torch.distributed as dist

            bad = torch.where(bad < 0, torch.tensor(2**62, device=bad.device), bad)
            dist.all_reduce(bad, op=dist.ReduceOp.MIN)
            bad = torch.where(bad == 2**62, torch.tensor(-1, device=bad.device), bad)
        if int(bad) >= 0:
            last = ckpt.latest_checkpoint(self.run_dir)
            raise ElfRuntimeError(f"non-finite loss at step {int(bad)}; stopped without saving. Last good "
                                  f"checkpoint: {last if last else 'none'} (lower optim.blr or check the data)")

    def _save(self, step: int, model: nn.Module, ema: EMA, opt: Optimizers, data: DataSource) -> Optional[Path]:
        path = None
        is_main = self.info.is_main
        window = self._window.state(self.info)  # metrics since the last log step: a resume continues them
        if self.sharded:  # every rank joins the gathers; rank 0 receives the full tensors
            model_state = fsdp.full_model_state(model, is_main)
            ema_state = ema.state_dict()
            enc_state = fsdp.full_model_state(data.encoder, is_main) if data.trainable_encoder else None
            opt_state = fsdp.full_optimizer_states(opt.optimizers, is_main)
        elif is_main:
            model_state, ema_state, opt_state = model.state_dict(), ema.state_dict(), opt.state_dict()
            enc_state = data.encoder.state_dict() if data.trainable_encoder else None
        if is_main:
            meta = {"family": self.cfg.model.family, "latent_dim": data.encoder.latent_dim,
                    "vocab_size": data.encoder.vocab_size,
                    "preset": self.cfg.model.preset, "prediction": self.cfg.model.prediction,
                    "world_size": self.info.world_size, "global_batch": self.cfg.train.batch_size,
                    "micro_batch": self.micro.micro, "grad_accum": self.micro.grad_accum,
                    "precision": self.precision.label,
                    "elfctl_version": __import__("elfctl").__version__}
            path = ckpt.save_checkpoint(self.run_dir, step, model_state=model_state,
                                        ema_state=ema_state, encoder_state=enc_state,
                                        train_state={"optimizers": opt_state, "step": step, "window": window},
                                        meta=meta, config_yaml=self.cfg.to_yaml(), keep_last=self.cfg.train.keep_last)
        if self.info.enabled:
            import torch.distributed as dist

            dist.barrier()
        return path

    def _restore(self, path: Path, model: nn.Module, ema: EMA, opt: Optimizers, data: DataSource) -> int:
        """Load a checkpoint (full tensors, whatever the run that wrote it); FSDP keeps each rank's chunks."""
        what = f"checkpoint {path}"
        state = ckpt.load_train_state(path)
        self._resumed_window = state.get("window")
        if self.sharded:
            fsdp.load_full_model_state(model, ckpt.load_tensors(path, "model"), what=what)
            ema.load_state_dict(ckpt.load_tensors(path, "ema"))
            if data.trainable_encoder:
                fsdp.load_full_model_state(data.encoder, ckpt.load_tensors(path, "encoder"), what=f"{what} encoder")
            if state["optimizers"] is not None:  # None: weights imported by `elfctl import`, fresh moments
                fsdp.load_full_optimizer_states(opt.optimizers, state["optimizers"])
            return int(state["step"])
        ckpt.load_state_dict_strict(model, ckpt.load_tensors(path, "model"), what=what)
        ema.load_state_dict(ckpt.load_tensors(path, "ema"))
        if data.trainable_encoder:
            data.encoder.load_state_dict(ckpt.load_tensors(path, "encoder"))
        if state["optimizers"] is not None:  # None: weights imported by `elfctl import`, fresh moments
            opt.load_state_dict(state["optimizers"])
        else:
            self._log(f"{path} holds weights only (imported): the optimizer starts from fresh moments")
        return int(state["step"])


class _Window:
    """Device-side sums of the metrics between two log steps (one sync per log step)."""

    def __init__(self, device: torch.device, state: Optional[dict] = None):
        self.device = device
        self.reset()
        if state:  # resumed between two log steps: continue the sums the checkpoint carried
            self.loss, self.l2, self.ce, self.grad_norm = (state[k].to(device) for k in ("loss", "l2", "ce",
                                                                                         "grad_norm"))
            self.micro, self.steps, self.tokens = state["micro"], state["steps"], state["tokens"]

    def state(self, info: DistInfo) -> dict:
        """The sums as a checkpoint stores them; under torchrun the ranks' means (the log averages over ranks)."""
        sums = torch.stack([self.loss, self.l2, self.ce, self.grad_norm]).float()
        sums = all_reduce_mean(sums, info).detach().cpu()
        return {"loss": sums[0].clone(), "l2": sums[1].clone(), "ce": sums[2].clone(), "grad_norm": sums[3].clone(),
                "micro": self.micro, "steps": self.steps, "tokens": self.tokens}

    def reset(self) -> None:
        z = lambda: torch.zeros((), device=self.device)  # noqa: E731
        self.loss, self.l2, self.ce, self.grad_norm = z(), z(), z(), z()
        self.micro = 0
        self.steps = 0
        self.tokens = 0
        self.t0 = time.perf_counter()

    def add(self, out, tokens: int) -> None:
        self.loss += out.loss.detach().float()
        self.l2 += out.l2.float()
        self.ce += out.ce.float()
        self.micro += 1
        self.tokens += tokens

    def flush(self, step: int, lr: float, info: DistInfo, epoch: float) -> dict:
        vals = torch.stack([self.loss, self.l2, self.ce]) / max(self.micro, 1)
        vals = all_reduce_mean(vals, info).tolist()
        elapsed = time.perf_counter() - self.t0
        metrics = {"step": step, "loss": vals[0], "l2": vals[1], "ce": vals[2], "lr": lr,
                   "grad_norm": float(self.grad_norm) / max(self.steps, 1),
                   "tokens_per_s": self.tokens * info.world_size / max(elapsed, 1e-9), "epoch": round(epoch, 4)}
        self.reset()
        return metrics


class _Progress:
    """A rich progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, m: dict, log: Callable[[str], None]) -> None:
        text = (f"loss {m['loss']:.4f}  l2 {m['l2']:.4f}  ce {m['ce']:.3f}  lr {m['lr']:.2e}  "
                f"{m['tokens_per_s']:.0f} tok/s")
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=text)
        else:
            loss_ok = math.isfinite(m["loss"])
            log(f"step {step}  {text}" + ("" if loss_ok else "  (non-finite)"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
