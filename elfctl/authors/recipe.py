"""Which shipped recipe an authors' checkpoint belongs to, and the resolved config of its imported run.

Nothing in their file says which task a model was trained on (an ELF-B for OpenWebText, XSum or WMT14 has the
same tensors), so the recipe comes from ``--recipe``, else from the source's name (their hub repos are named
``ELF-B-xsum-torch`` and so on), else from the architecture (ELF-B/M/L -> owt/owt-elf-m/owt-elf-l).
The authors' own sampling settings for each released model (AUTHORS-RELEASE.md, their sampling configs)
become the imported run's ``sample.*`` defaults.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Optional, Sequence

from elfctl.authors.architecture import Architecture
from elfctl.config import (Config, EncoderConfig, SampleConfig, _deep_merge, _load_raw, apply_overrides,
                           config_from_dict, parse_override)
from elfctl.errors import ConfigError
from elfctl.recipes import find_recipe, shipped_recipes

# recipe -> the authors' sampling settings for that released model
AUTHORS_SAMPLING: dict[str, dict] = {
    "owt": dict(sampler="sde", steps=32, gamma=1.5, cfg=1.0, sc_cfg=3.0, time_grid="logit_normal"),
    "owt-elf-m": dict(sampler="sde", steps=64, gamma=1.0, cfg=1.0, sc_cfg=3.0, time_grid="logit_normal"),
    "owt-elf-l": dict(sampler="sde", steps=64, gamma=1.0, cfg=1.0, sc_cfg=3.0, time_grid="logit_normal"),
    "xsum": dict(sampler="ode", steps=64, gamma=0.0, cfg=2.0, sc_cfg=1.0, time_grid="logit_normal"),
    "wmt14-de-en": dict(sampler="ode", steps=64, gamma=0.0, cfg=2.0, sc_cfg=1.0, time_grid="logit_normal"),
    # The PD student: the authors sweep 1-32 steps (SDE gamma 1.5, SC-CFG 2.5 up to 8 steps); 8 is the fewest
    # at which their student matches ELF-B's 32-step Gen PPL (23.18 vs 24.1), so it is the default here.
    "owt-pd": dict(sampler="sde", steps=8, gamma=1.5, cfg=1.0, sc_cfg=2.5, time_grid="logit_normal"),
}
BY_PRESET = {"elf-b": "owt", "elf-m": "owt-elf-m", "elf-l": "owt-elf-l"}
T5_VOCAB = 32100          # len(t5-small tokenizer); their CE head's size (not the encoder's 32,128 rows)
T5_LATENT = 512           # t5-small's d_model


def recipe_from_name(source: str) -> Optional[str]:
    """A recipe named by the source's spelling (their hub repo names), or None."""
    s = source.lower().replace("_", "-")
    words = set(re.split(r"[-/. ]+", s))
    if "xsum" in words:
        return "xsum"
    if "de-en" in s or any(w.startswith("wmt") for w in words):
        return "wmt14-de-en"
    if "pd" in words:
        return "owt-pd"
    return None


def match_recipe(arch: Architecture, source: str, recipe: Optional[str],
                 note: Callable[[str], None]) -> str:
    """The shipped recipe the imported run is based on (see the module docstring)."""
    if recipe:
        find_recipe(recipe)  # one line if unknown
        return recipe
    named = recipe_from_name(source)
    if named == "owt-pd" and named not in shipped_recipes():
        note("note: no owt-pd recipe is shipped in this version; the PD student is imported on the owt recipe "
             "with the authors' few-step sampling settings")
        return "owt"
    if named:
        return named
    by_arch = BY_PRESET.get(arch.preset or "")
    if by_arch is None:
        note(f"note: {arch.summary()} is none of the released sizes; imported on the owt recipe with this shape "
             f"(pass --recipe to choose another)")
        return "owt"
    if by_arch == "owt":
        note("note: taken as the OpenWebText ELF-B (recipe owt); an ELF-B trained on XSum or WMT14 has the same "
             "tensors: pass --recipe xsum or --recipe wmt14-de-en for those")
    return by_arch


def sampling_for(recipe: str, source: str) -> Optional[dict]:
    """The authors' settings for the model: the recipe's, or the PD student's when it rides on owt."""
    if recipe == "owt" and recipe_from_name(source) == "owt-pd":
        return AUTHORS_SAMPLING["owt-pd"]
    return AUTHORS_SAMPLING.get(recipe)


def _overridden(overrides: Sequence[str], key: str) -> bool:
    return any(".".join(parse_override(o)[0]) == key for o in overrides)


def model_section(arch: Architecture) -> dict:
    """The ``model`` keys that describe exactly the network of the checkpoint's tensors."""
    model = {"prediction": "x", "bottleneck_dim": arch.bottleneck_dim, "num_time_tokens": arch.num_time_tokens,
             "num_sc_cfg_tokens": arch.num_sc_cfg_tokens, "num_mode_tokens": arch.num_mode_tokens,
             "depth": None, "hidden_size": None, "num_heads": None}
    if arch.preset:
        model["preset"] = arch.preset
    else:  # a shape of its own: the overrides say it
        model.update(depth=arch.depth, hidden_size=arch.hidden_size, num_heads=arch.num_heads)
    return model


def _uses_t5_text(data: dict, overrides: Sequence[str]) -> bool:
    """Whether the run encodes with t5-small (the recipe's encoder, not replaced by an override): only then is its
    tokenizer t5-small's too, as in the authors' code; another encoder keeps its own (the recipe's setting)."""
    return (not _overridden(overrides, "encoder.source")
            and (data.get("encoder") or {}).get("source", EncoderConfig().source) == "t5-small")


def build_config(arch: Architecture, recipe: str, source: str, *, run_dir: Path, step: int, tokenizer: str,
                 overrides: Sequence[str] = ()) -> Config:
    """The resolved config of the imported run: the recipe, the checkpoint's shape, the authors' sampling."""
    path = find_recipe(recipe)
    data = _load_raw(path)
    base = config_from_dict(dict(data), name=recipe)
    model = model_section(arch)
    sample = dict(sampling_for(recipe, source) or {})
    if "bf16" in {f.name for f in dataclasses.fields(SampleConfig)}:
        sample["bf16"] = True  # the authors sample under bf16 autocast on CUDA (fp32 on the CPU)
    ours = {"name": recipe,
            "description": f"{base.description} - the authors' released weights ({source}, step {step})",
            "model": model, "sample": sample, "train": {"run_dir": str(run_dir)}}
    t5_tokenizer = _uses_t5_text(data, overrides) and not _overridden(overrides, "encoder.tokenizer")
    if t5_tokenizer:
        ours["encoder"] = {"tokenizer": tokenizer}
    merged = apply_overrides(_deep_merge(data, ours), overrides)
    cfg = config_from_dict(merged)
    _check_text_side(cfg, arch, overrides, t5_tokenizer)
    return cfg


def _check_text_side(cfg: Config, arch: Architecture, overrides: Sequence[str], t5_tokenizer: bool) -> None:
    """The t5-small encoder and tokenizer fit only a latent width of 512 and a vocabulary of 32,100."""
    t5_encoder = not _overridden(overrides, "encoder.source") and cfg.encoder.source == "t5-small"
    if t5_encoder and arch.latent_dim != T5_LATENT:
        raise ConfigError(f"the checkpoint's latent width is {arch.latent_dim}, but recipe encoder t5-small gives "
                          f"{T5_LATENT}; pass encoder.source=... naming the encoder it was trained with")
    if t5_tokenizer and arch.vocab_size != T5_VOCAB:
        raise ConfigError(f"the checkpoint's vocabulary is {arch.vocab_size}, but t5-small's tokenizer has "
                          f"{T5_VOCAB} entries; pass encoder.tokenizer=... naming the tokenizer it was trained with")
