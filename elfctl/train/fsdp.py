"""FSDP2 training (``train.fsdp=true``): the ELF network sharded with ``fully_shard`` under torchrun.

``torchrun --nproc_per_node N -m elfctl train RECIPE train.fsdp=true optim.optimizer=adamw`` shards every
transformer block, then the root (the input/prefix/head parameters), over all N ranks (dim-0 shards of every
parameter, gradient and AdamW state; FSDP2, ``torch.distributed.fsdp.fully_shard``), instead of replicating
the network with DDP. A trainable encoder (``encoder.mode=learned``) is sharded as a second root. The loss,
the gradient (averaged over ranks, clipped by the global norm) and the update are those of DDP or of one
process with the same global batch, up to float rounding.

What the user sees:

* ``train.fsdp=true`` with ``optim.optimizer=muon`` is refused at startup (ConfigError, exit 2):
  ``torch.optim.Muon`` orthogonalises each whole 2-D matrix (Newton–Schulz). Run on dim-0 sharded DTensors,
  torch 2.13 turns every Newton–Schulz matmul into collectives: every rank then does the whole
  orthogonalisation of every matrix. The update also differs from the unsharded one at bf16 rounding level, so
  it does not reproduce a DDP or single-process run the way AdamW does. Use ``optim.optimizer=adamw`` with FSDP,
  or DDP (``train.fsdp=false``) with Muon.
* ``train.fsdp=true`` without torchrun, or under torchrun with one process, is refused too (ConfigError,
  exit 2): there is nothing to shard over, and training unsharded instead would hide a launch mistake (the
  run would need N times the memory that was planned for). Set ``train.fsdp=false`` to train in one
  process.
* Checkpoints keep the format of unsharded runs (``elfctl.rundir.checkpoint``): full (gathered) model, EMA
  and encoder weights as safetensors, and the optimizer state in ``torch.optim``'s own integer-keyed layout
  with full tensors. Rank 0 writes them, atomically, as always. So ``elfctl sample`` loads an FSDP run
  unchanged, and a run can be resumed with or without FSDP, on any number of ranks.
* The EMA of the weights is kept per rank over the local shards (the update is elementwise, so this is
  exactly the EMA of the full weights) and gathered when a checkpoint is written.

How the forward passes work: the objective runs up to two no-grad helper passes (self-conditioning,
SC-CFG) before the differentiable pass, on the rows that need them, so ranks run different numbers of
passes. Under FSDP every forward of a sharded block all-gathers its parameters, a collective that every
rank must join; so each micro-step first gathers all parameters once on every rank (:meth:`FsdpForward.begin`),
the helper passes run on them without resharding, and the differentiable pass reshards each block after
its forward (the backward gathers it again and reduce-scatters its gradient). The whole network is thus
unsharded on every rank for the helper passes: the saving is in gradients and optimizer state (and in
parameters during the backward). Gradients are reduce-scattered on every micro-step of gradient
accumulation, so they stay sharded.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
import torch.nn as nn

from elfctl.errors import ConfigError
from elfctl.rundir.checkpoint import check_state_dict


def check_config(cfg, world_size: int) -> None:
    """Refuse the combinations FSDP does not support (one-line ConfigError, exit 2)."""
    if not cfg.train.fsdp:
        return
    if cfg.optim.optimizer == "muon":
        raise ConfigError("train.fsdp=true does not work with optim.optimizer=muon (Muon orthogonalises whole "
                          "matrices, FSDP shards them by rows); use optim.optimizer=adamw, or train.fsdp=false "
                          "for DDP with Muon")
    if world_size < 2:
        raise ConfigError(f"train.fsdp=true needs torchrun with >= 2 processes (world size is {world_size}); "
                          f"launch `torchrun --nproc_per_node N -m elfctl train ...`, or set train.fsdp=false "
                          f"to train in one process")


def _is_dtensor(t: Any) -> bool:
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a collective: every rank must call it); other tensors unchanged."""
    return t.full_tensor() if _is_dtensor(t) else t


def block_mixed_precision(bf16: bool):
    """The FSDP2 policy of the transformer blocks: with ``train.bf16`` (on CUDA), parameters all-gathered and
    gradients reduce-scattered in bf16 (half the traffic of fp32; the sharded master weights, the optimizer
    state and the update stay fp32). Block inputs are not cast (``cast_forward_inputs=False``): the residual
    stream stays fp32 as under DDP, and autocast runs the matmuls in bf16 as it does there. None without bf16."""
    if not bf16:
        return None
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, cast_forward_inputs=False)


def shard(model: nn.Module, device: torch.device, world_size: int, encoder: Optional[nn.Module] = None, *,
          bf16: bool = False) -> None:
    """``fully_shard`` every block of ``model``, then ``model`` (and a trainable ``encoder``), in place.

    Every rank must hold the same full weights before (same seed): each keeps its own dim-0 chunk. Build the
    optimizers and the EMA after this call: sharding replaces the parameters. ``bf16``: the blocks gather and
    reduce in bf16 (:func:`block_mixed_precision`); the root (input projections, prefix embedders, heads) and
    the encoder stay fp32, because the network runs those in fp32 outside autocast.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    policy = block_mixed_precision(bf16)
    for block in model.blocks:
        if policy is None:
            fully_shard(block, mesh=mesh)
        else:
            fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh)
    if encoder is not None:
        fully_shard(encoder, mesh=mesh)


class FsdpForward:
    """The two callables the objective runs the sharded network through (see the module docstring).

    Call :meth:`begin` on every rank before each micro-step's objective; pass :meth:`train` as the model
    and :meth:`helper` as ``helper_model``.
    """

    def __init__(self, model: nn.Module, forward: Optional[Any] = None):
        self.model = model  # the sharded network (train.compile: its blocks compiled in place); helper passes
        self.forward = forward if forward is not None else model  # the differentiable pass
        self.blocks = list(model.blocks)

    def _reshard_blocks(self, on: bool) -> None:
        for block in self.blocks:
            block.set_reshard_after_forward(on, recurse=False)

    def begin(self) -> None:
        """All-gather every parameter (blocks and root); the same collectives on every rank."""
        handles = [m.unshard(async_op=True) for m in (*self.blocks, self.model)]
        for h in handles:
            if h is not None:
                h.wait()

    def helper(self, *args, **kwargs):
        """A no-grad helper pass on the gathered parameters: no collective, nothing resharded."""
        self._reshard_blocks(False)
        return self.model(*args, **kwargs)

    def train(self, *args, **kwargs):
        """The differentiable pass: each block is resharded after its forward, gathered again in backward."""
        self._reshard_blocks(True)
        with warnings.catch_warnings():
            # The heads' nn.Linear on (B, L, C) returns views; FSDP2 warns that an in-place op on them would
            # skip its pre-backward hook. The objective uses the outputs out of place only.
            warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
            return self.forward(*args, **kwargs)


# ---------------------------------------------------------------------- state dicts
def full_model_state(module: nn.Module, is_main: bool) -> dict[str, torch.Tensor]:
    """The full state dict of a sharded module on CPU on rank 0 ({} elsewhere); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if is_main else {}


def load_full_model_state(module: nn.Module, state: dict[str, torch.Tensor], *, what: str) -> None:
    """Load a full (unsharded) state dict into a sharded module: each rank keeps its own chunk."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    check_state_dict(module.state_dict(), state, what=what)  # DTensor shapes are the full shapes
    set_model_state_dict(module, dict(state), options=StateDictOptions(full_state_dict=True, strict=True))


def _param_list(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def full_optimizer_states(optimizers: list[torch.optim.Optimizer], is_main: bool) -> list[dict]:
    """``[opt.state_dict() ...]`` with every sharded state tensor gathered: the layout an unsharded run saves.

    Every rank must call it (one all-gather per sharded tensor, in the same order everywhere); rank 0 gets
    CPU tensors, the other ranks ``None`` in their place.
    """
    out = []
    for opt in optimizers:
        sd = opt.state_dict()
        state = {}
        for idx in sorted(sd["state"]):
            entry = {}
            for key, value in sd["state"][idx].items():
                if _is_dtensor(value):
                    value = value.full_tensor()
                    value = value.cpu() if is_main else None
                elif torch.is_tensor(value):
                    value = value.detach().cpu()
                entry[key] = value
            state[idx] = entry
        out.append({"state": state, "param_groups": sd["param_groups"]})
    return out


def load_full_optimizer_states(optimizers: list[torch.optim.Optimizer], states: list[dict]) -> None:
    """Load states saved by :func:`full_optimizer_states` (or by an unsharded run) into sharded optimizers."""
    from torch.distributed.tensor import distribute_tensor

    if len(states) != len(optimizers):
        raise ConfigError(f"checkpoint holds {len(states)} optimizer states, this run has {len(optimizers)} "
                          f"(optim.optimizer changed?)")
    for opt, sd in zip(optimizers, states):
        params = _param_list(opt)
        state = {}
        for idx, entry in sd["state"].items():
            if not 0 <= int(idx) < len(params):
                raise ConfigError(f"checkpoint optimizer state has parameter {idx}, this run has {len(params)}")
            p = params[int(idx)]
            new = {}
            for key, value in entry.items():
                if _is_dtensor(p) and torch.is_tensor(value) and value.dim() > 0 and value.shape == p.shape:
                    # every rank holds the full tensor: keep the local chunk, no communication
                    value = distribute_tensor(value.detach().to(p.device), p.device_mesh, p.placements,
                                              src_data_rank=None)
                new[key] = value
            state[idx] = new
        opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


class ShardedEMA:
    """EMA of a sharded module's parameters, kept on each rank's local chunks; the same interface as
    :class:`elfctl.train.optim.EMA` (``state_dict`` gathers, so every rank must call it)."""

    def __init__(self, module: nn.Module, decay: float, is_main: bool = True, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.is_main = is_main
        named = list(module.named_parameters())
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]  # the sharded parameters (the optimizer updates them in place)
        self.shadow = [self._local(p).detach().clone().float() for p in self.params]

    @staticmethod
    def _local(p: torch.Tensor) -> torch.Tensor:
        return p.to_local() if _is_dtensor(p) else p

    @torch.no_grad()
    def update(self, module: Optional[nn.Module], count: int) -> None:
        from elfctl.train.optim import ema_decay_at

        params = [self._local(p).detach().float() for p in self.params]
        torch._foreach_lerp_(self.shadow, params, 1.0 - ema_decay_at(self.decay, count, self.warmup))

    def state_dict(self) -> dict[str, torch.Tensor]:
        from torch.distributed.tensor import DTensor

        out = {}
        for name, p, s in zip(self.names, self.params, self.shadow):
            if _is_dtensor(p):
                s = DTensor.from_local(s, p.device_mesh, p.placements, shape=p.shape,
                                       stride=p.stride()).full_tensor()
            if self.is_main:
                out[name] = s.detach().cpu()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from torch.distributed.tensor import distribute_tensor

        for i, (name, p) in enumerate(zip(self.names, self.params)):
            value = state[name].detach().to(device=self.shadow[i].device, dtype=torch.float32)
            if _is_dtensor(p):
                value = distribute_tensor(value, p.device_mesh, p.placements, src_data_rank=None).to_local()
            self.shadow[i].copy_(value)
