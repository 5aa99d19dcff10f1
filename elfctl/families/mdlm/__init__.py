"""MDLM (Sahoo et al. 2024) as an elfctl model family: masked discrete diffusion on token ids.

The family's parts: the forward process and SUBS (:mod:`.masking`), the DiT backbone (:mod:`.network`), the NELBO
objective (:mod:`.objective`), the ancestral sampler (:mod:`.sampler`), the validation bound (:mod:`.likelihood`).
Its settings are the ``mdlm`` section of a recipe (eps, time_conditioning, stratified_t, cond_dim), with the shape
from ``model`` (preset, depth, hidden_size, num_heads, dropout) and the tokenizer from ``encoder`` (no encoder
weights are loaded: this family never sees latents).

[MASK]: the tokenizer's own mask token when it has one (BERT/MiniLM: id 103, vocabulary unchanged); otherwise one
row appended after the tokenizer's ids, m = len(tokenizer) (never ``tokenizer.vocab_size``, which leaves out added
tokens).
"""

from __future__ import annotations

import torch.nn as nn


def mask_token(tok) -> tuple[int, int]:
    """(mask id, vocabulary rows of the network)."""
    own = getattr(tok, "mask_token_id", None)
    if own is not None and 0 <= own < len(tok):
        return int(own), len(tok)
    return len(tok), len(tok) + 1


class MdlmFamily:
    name = "mdlm"

    def vocab_size(self, tok) -> int:
        return mask_token(tok)[1]

    def build_network(self, cfg, *, latent_dim=None, vocab_size: int) -> nn.Module:
        from elfctl.families.mdlm.network import DiT
        from elfctl.model import resolve_shape

        m = cfg.model
        shape = resolve_shape(m.preset, m.depth, m.hidden_size, m.num_heads)
        return DiT(vocab_size, depth=shape.depth, hidden_size=shape.hidden_size, num_heads=shape.num_heads,
                   cond_dim=cfg.mdlm.cond_dim, dropout=m.dropout, time_conditioning=cfg.mdlm.time_conditioning,
                   gradient_checkpointing=m.gradient_checkpointing)

    def objective(self, cfg, data, device=None):
        from elfctl.families.mdlm.objective import MdlmObjective

        return MdlmObjective.from_config(cfg, mask_token(data.tokenizer)[0])

    def sampler(self, loaded, sample, model: nn.Module):
        from elfctl.families.mdlm.sampler import AncestralSampler

        mask_id = mask_token(loaded.tokenizer)[0]
        sampler = AncestralSampler(model, mask_id=mask_id, steps=sample.steps, eps=loaded.cfg.mdlm.eps,
                                   cache=sample.sampler == "ddpm_cache", noise_removal=sample.noise_removal,
                                   time_conditioning=loaded.cfg.mdlm.time_conditioning, bf16=sample.bf16)
        return sampler  # its mask_id makes trajectory frames show [MASK] (elfctl.sampling.trajectory)

    def sampler_record(self, sample) -> dict:
        from elfctl.sampling.settings import header_record

        record = header_record(sample, family=self.name)
        for key in ("gamma", "time_grid", "cfg", "sc_cfg"):  # ELF's guidance and grid: not read here
            record.pop(key, None)
        return {**record, "categorical_dtype": "float64"}

    def likelihood(self, loaded, *, device, batch_size: int = 64, max_examples=None, seed: int = 0,
                   log=lambda s: None) -> dict:
        """Validation NELBO over the recipe's held-out split (``data.eval_split``) with the loaded weights."""
        from elfctl.data.dataset import build_dataset
        from elfctl.families.mdlm.likelihood import validation_nelbo
        from elfctl.families.mdlm.objective import MdlmObjective

        cfg = loaded.cfg
        dataset = build_dataset(cfg, cfg.data.eval_split, loaded.tokenizer, data_dir=cfg.data.data_dir, log=log)
        objective = MdlmObjective.from_config(cfg, mask_token(loaded.tokenizer)[0])
        res = validation_nelbo(loaded.model, objective, dataset, batch_size=batch_size, device=device, seed=seed,
                               max_examples=max_examples, log=log)
        return {**res, "split": cfg.data.eval_split, "ema": loaded.ema}

    def train_flops(self, model: nn.Module, cfg) -> int:
        """Expected model FLOPs of one training step: one forward and its backward (2x) over the batch, the head on
        the masked share of the positions, E[(1 - eps) t] = (1 - eps)(1 + eps)/2 (pads counted as valid)."""
        from elfctl.families.mdlm.network import forward_flops

        B, L, eps = cfg.train.batch_size, cfg.data.max_length, cfg.mdlm.eps
        return int(3 * forward_flops(model, B, L, head_tokens=B * L * (1 - eps) * (1 + eps) / 2))


FAMILY = MdlmFamily()
