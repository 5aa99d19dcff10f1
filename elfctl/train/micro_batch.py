"""The per-rank micro-batch (``train.micro_batch_size``) and the gradient accumulation it implies.

The recipe's ``train.batch_size`` is the global batch of the paper and never changes here. Each optimizer step
is ``world_size × grad_accum`` micro-steps of ``micro_batch_size`` examples, so

    grad_accum = batch_size / (world_size × micro_batch_size)

``train.micro_batch_size``: unset keeps ``train.grad_accum`` as given; an integer is the micro-batch per rank;
``auto`` is the whole per-rank batch on the CPU, and on CUDA the largest divisor of the per-rank batch whose
forward and backward pass (one short probe each, largest first) fits the GPU with room left for the optimizer's
moments. :func:`step_memory` is the memory model behind tests and planning: saved-for-backward bytes of the real
objective measured on the CPU, scaled to the recipe's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from elfctl.errors import ConfigError

# Share of the GPU's memory a probe's peak (plus the optimizer moments still to come) may use: the rest is the
# allocator's fragmentation and what the data pipeline and NCCL hold.
GPU_MEMORY_SHARE = 0.9


@dataclass(frozen=True)
class MicroBatch:
    micro: int         # examples per micro-step on each rank
    grad_accum: int    # micro-steps per optimizer step on each rank
    how: str           # how it was chosen (logged)


def divisors_desc(n: int) -> list[int]:
    return sorted({d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)}, reverse=True)


def resolve(setting, grad_accum: int, batch_size: int, world_size: int, *, device_type: str,
            fits: Optional[Callable[[int], bool]] = None) -> MicroBatch:
    """The micro-batch and grad_accum of a run. ``fits(m)`` answers whether m examples per micro-step fit
    (needed for ``auto`` on CUDA)."""
    if batch_size % world_size:
        raise ConfigError(f"train.batch_size: {batch_size} must be divisible by the world size ({world_size})")
    per_rank = batch_size // world_size
    if setting is None:
        if per_rank % grad_accum:
            raise ConfigError(f"train.batch_size: {batch_size} must be divisible by world size × grad_accum = "
                              f"{world_size * grad_accum}")
        return MicroBatch(per_rank // grad_accum, grad_accum, "train.grad_accum")
    if setting == "auto":
        if device_type != "cuda" or fits is None:
            return MicroBatch(per_rank, 1, f"auto: the whole per-rank batch on {device_type}")
        for m in divisors_desc(per_rank):
            if fits(m):
                return MicroBatch(m, per_rank // m, "auto: the largest that fit a probe")
        raise ConfigError("train.micro_batch_size: auto found no micro-batch that fits this GPU (1 example of "
                          "data.max_length tokens did not); lower data.max_length or use a smaller model.preset")
    m = int(setting)
    if per_rank % m:
        ok = ", ".join(str(d) for d in reversed(divisors_desc(per_rank)))
        raise ConfigError(f"train.micro_batch_size: {m} does not divide the per-rank batch {per_rank} "
                          f"(train.batch_size {batch_size} / world size {world_size}); use one of {ok} or auto")
    return MicroBatch(m, per_rank // m, "train.micro_batch_size")


def agree(mb: MicroBatch, per_rank: int, device) -> MicroBatch:
    """Under torchrun: the smallest micro-batch any rank's probe chose (ranks that accumulate a different number
    of micro-steps would wait for each other's gradients forever). A divisor of the per-rank batch, like each."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(mb.micro, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    m = int(t)
    return mb if m == mb.micro else MicroBatch(m, per_rank // m, mb.how + "; the smallest over the ranks")


def later_state_bytes(model) -> int:
    """What the trainer allocates after the probe (fp32): the EMA copy, and the moments the first optimizer step
    creates, at most two per parameter (Adam; Muon keeps one)."""
    return 12 * sum(p.numel() for p in model.parameters() if p.requires_grad)


def cuda_probe(model, objective, *, latent_dim: int, vocab: int, length: int, device, bf16: bool,
               log: Callable[[str], None] = lambda s: None) -> Callable[[int], bool]:
    """``fits(m)``: one forward and backward of the objective on m synthetic rows (every helper pass on, the
    decode head on a share of rows as the objective draws it), peak plus the EMA and the optimizer's moments
    within ``GPU_MEMORY_SHARE`` of the GPU. Leaves no gradients and no cached blocks behind."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    extra = later_state_bytes(model)

    def fits(m: int) -> bool:
        ok = False
        try:
            with torch.random.fork_rng(devices=[device]):
                torch.cuda.reset_peak_memory_stats(device)
                x = torch.randn(m, length, latent_dim, device=device)
                ids = torch.randint(0, vocab, (m, length), device=device)
                am = torch.ones(m, length, dtype=torch.bool, device=device)
                cm = torch.zeros(m, length, dtype=torch.bool, device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    d = objective.draw(x)
                    d.sc_rows[:] = True  # the helper passes on every row: the heaviest draw
                    objective(model, x, ids, am, cm, draws=d).loss.backward()
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device)
            ok = peak + extra <= GPU_MEMORY_SHARE * total
            log(f"train.micro_batch_size=auto: {m} per rank {'fits' if ok else 'leaves too little room'} "
                f"(probe peak {peak / 2**30:.1f} GiB + {extra / 2**30:.1f} GiB EMA and optimizer moments of "
                f"{total / 2**30:.0f} GiB)")
        except torch.OutOfMemoryError:
            log(f"train.micro_batch_size=auto: {m} per rank is out of memory")
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        return ok

    return fits


# ------------------------------------------------------------------ the memory model
@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training micro-step as a function of the micro-batch m (fp32 activations: an upper bound for
    bf16 autocast, which saves the matmul inputs in half the bytes)."""

    static: int            # weights, gradients, EMA, optimizer moments (fp32) and bf16 weight copies
    per_example: int       # saved-for-backward bytes of one denoise row
    per_decode_row: int    # what a decode-branch row adds (its vocabulary logits and cross-entropy)
    decoder_prob: float

    def decode_rows(self, m: int) -> int:
        """Decode rows to plan for: the binomial draw's mean plus 3.1 standard deviations (p ≈ 0.999)."""
        p = self.decoder_prob
        return min(m, math.ceil(m * p + 3.1 * math.sqrt(m * p * (1 - p))))

    def bytes(self, m: int) -> int:
        return self.static + m * self.per_example + self.decode_rows(m) * self.per_decode_row


def saved_bytes(fn: Callable[[], object], params=()) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn`` runs, except parameters and views of
    ``params``' storage (a transposed weight is no new memory). Each save counts, so a tensor saved by two
    operations counts twice (an upper bound)."""
    import torch

    total = 0
    weights = {p.untyped_storage().data_ptr() for p in params}

    def pack(t):
        nonlocal total
        if not (t.requires_grad and t.is_leaf) and t.untyped_storage().data_ptr() not in weights:
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def step_memory(cfg, latent_dim: int, vocab: int, *, measure_length: int = 128) -> StepMemory:
    """The memory model of a recipe's training step, measured on the CPU: the real objective's saved bytes for
    one denoise row and one decode row, at depth 1 and 2 (the blocks are alike: depth d costs d - 1 more
    blocks), at ``measure_length`` tokens scaled linearly to ``data.max_length`` (attention saves O(L) with the
    flash kernels; the prefix tokens scale too, so the scaling only overestimates)."""
    import copy

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from elfctl.model import build_model, count_parameters, resolve_shape
    from elfctl.objective import ElfObjective

    L = min(measure_length, cfg.data.max_length)
    depth = resolve_shape(cfg.model.preset, cfg.model.depth, cfg.model.hidden_size, cfg.model.num_heads).depth
    objective = ElfObjective.from_config(cfg)
    got = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for d in (1, 2):
            mc = copy.deepcopy(cfg.model)
            mc.depth = d
            mc.gradient_checkpointing = False
            model = build_model(mc, latent_dim, vocab)
            for decode in (False, True):
                x = torch.randn(1, L, latent_dim)
                ids = torch.zeros(1, L, dtype=torch.long)
                am, cm = torch.ones(1, L, dtype=torch.bool), torch.zeros(1, L, dtype=torch.bool)
                draws = objective.draw(x)
                draws.decode_rows, draws.sc_rows = torch.tensor([decode]), torch.tensor([True])
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
                    got[d, decode] = saved_bytes(lambda: objective(model, x, ids, am, cm, draws=draws),
                                                 list(model.parameters()))
    scale = cfg.data.max_length / L
    per_block = got[2, False] - got[1, False]
    per_example = got[1, False] + (depth - 1) * per_block
    with torch.device("meta"):  # shapes only
        params = count_parameters(build_model(cfg.model, latent_dim, vocab))
    # weights + gradients + EMA (4 bytes each) + at most two fp32 moments, + autocast's bf16 weight copies
    return StepMemory(static=22 * params, per_example=int(per_example * scale),
                      per_decode_row=int((got[1, True] - got[1, False]) * scale),
                      decoder_prob=cfg.objective.decoder_prob)
