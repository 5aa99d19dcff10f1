"""ELF as a model family: its network (:mod:`elfctl.model`), objective (:mod:`elfctl.objective`) and Euler sampler
(:mod:`elfctl.sampling.sampler`), unchanged; this module only names them for :mod:`elfctl.family`."""

from __future__ import annotations

import torch.nn as nn


class ElfFamily:
    name = "elf"

    def build_network(self, cfg, *, latent_dim: int, vocab_size: int) -> nn.Module:
        from elfctl.model import build_model

        return build_model(cfg.model, latent_dim, vocab_size)

    def objective(self, cfg, data=None, device=None):
        from elfctl.objective import ElfObjective

        return ElfObjective.from_config(cfg)

    def sampler(self, loaded, sample, model: nn.Module):
        """``ode`` and ``sde`` are one Euler sampler (gamma 0 is the ODE)."""
        from elfctl.flow import FlowPath
        from elfctl.sampling.sampler import EulerSampler, SamplerSettings

        return EulerSampler(model, FlowPath.from_config(loaded.cfg), SamplerSettings.from_config(loaded.cfg, sample))

    def sampler_record(self, sample) -> dict:
        from elfctl.sampling.settings import header_record

        return header_record(sample, family=self.name)

    def train_flops(self, model: nn.Module, cfg) -> int:
        """Expected model FLOPs of one training step (:mod:`elfctl.train.flops`): the decode head on the
        decode-branch share of the rows, the helper passes on the self-conditioned denoise rows."""
        from elfctl.train.flops import step_flops

        o, B = cfg.objective, cfg.train.batch_size
        helper_rows = round(B * (1 - o.decoder_prob) * o.self_cond_prob)
        passes = 0 if o.self_cond_prob == 0 else (2 if cfg.model.num_sc_cfg_tokens > 0 else 1)
        return step_flops(model, B, cfg.data.max_length, decode_rows=round(B * o.decoder_prob),
                          helper_rows=helper_rows, helper_passes=passes).total


FAMILY = ElfFamily()
