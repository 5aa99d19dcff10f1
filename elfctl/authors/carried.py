"""What an elfctl export carries for its own import: the run's resolved config, inside the file.

The authors' format says nothing about the text side: their code always encodes with t5-small, so an
importer of a bare ``checkpoint_<step>`` has to assume t5-small's encoder and tokenizer. An elfctl run may
have been trained on another encoder (the quickstart's MiniLM: latent width 384, vocabulary 30,522), so the
exporter adds one top-level entry, ``elfctl``, holding the run's resolved config as YAML text (plus a format
number). Their loader reads only the keys it names (``params``, ``ema_params1``, ``opt_state``, ``step``,
``epoch``, ...) and ignores this one; ``torch.load(weights_only=True)`` reads it (a dict of strings and ints).
``elfctl import FILE`` (and ``elfctl sample --checkpoint FILE``) then rebuilds the run's config from it: the
same encoder, tokenizer, recipe name and sampling settings, so the imported run samples what the original did.
"""

from __future__ import annotations

from typing import Optional

import yaml

from elfctl import __version__
from elfctl.config import Config
from elfctl.errors import ConfigError

CARRIED_KEY = "elfctl"
CARRIED_FORMAT = 1


def carried_entry(cfg: Config) -> dict:
    """The top-level entry an export adds beside the authors' keys."""
    return {"format": CARRIED_FORMAT, "config": cfg.to_yaml(), "elfctl_version": __version__}


def carried_config(obj: dict, what: str) -> Optional[dict]:
    """The run config (a plain dict) an elfctl export carries in ``obj``, or None for an authors' own file."""
    entry = obj.get(CARRIED_KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), str):
        raise ConfigError(f"{what}: its '{CARRIED_KEY}' entry is not an elfctl export's (a dict with the run's "
                          f"config as text); re-export the run with `elfctl export RUN --format authors`")
    if entry.get("format") != CARRIED_FORMAT:
        raise ConfigError(f"{what}: written by elfctl {entry.get('elfctl_version', '?')} in export format "
                          f"{entry.get('format')!r}; this elfctl ({__version__}) reads format {CARRIED_FORMAT}: "
                          f"export it again with this version")
    try:
        data = yaml.safe_load(entry["config"])
    except yaml.YAMLError as e:
        raise ConfigError(f"{what}: the run config it carries is not valid YAML ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: the run config it carries is not a mapping of sections")
    return data


def build_carried_config(arch, carried: dict, source: str, *, recipe: Optional[str], run_dir, step: int,
                         overrides=()) -> Config:
    """The imported run's config from what the export carries: the exported run's own config (or, with
    ``--recipe``, that shipped recipe on the exported run's encoder and tokenizer), the checkpoint's shape."""
    from elfctl.authors.recipe import model_section, sampling_for
    from elfctl.config import _deep_merge, _load_raw, apply_overrides, config_from_dict
    from elfctl.recipes import find_recipe

    if recipe:
        data = _load_raw(find_recipe(recipe))
        ours = {"name": recipe, "encoder": dict(carried.get("encoder") or {}),
                "sample": dict(sampling_for(recipe, source) or {})}
    else:
        data = carried
        ours = {}
    description = str(data.get("description") or "")
    ours.update(model=model_section(arch), train={"run_dir": str(run_dir)},
                description=f"{description} - imported from {source} (step {step})".lstrip(" -"))
    merged = apply_overrides(_deep_merge(data, ours), overrides)
    try:
        return config_from_dict(merged)
    except ConfigError as e:
        if recipe:
            raise
        # e.g. an export of a newer elfctl whose config has keys this one lacks
        raise ConfigError(f"{source}: the run config this export carries does not load here ({e}); pass --recipe "
                          f"NAME to import it on a shipped recipe instead") from None
