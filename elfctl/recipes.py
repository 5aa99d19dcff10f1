"""Finding shipped and user recipes by name or path.

Shipped recipes live in the top-level ``recipes/`` folder, installed as the data folder
``elfctl.shipped_recipes`` (this module is the only ``elfctl.recipes``); a bare name (``owt``) resolves to ``recipes/owt.yaml``, a path to itself.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from elfctl.errors import ConfigError


def recipes_dir() -> Path:
    """The directory holding the shipped recipes: ``elfctl/shipped_recipes`` in a wheel, the checkout's
    ``recipes/`` folder in an editable install or a bare checkout (see ``elfctl._source_folders``)."""
    import importlib.util

    spec = importlib.util.find_spec("elfctl.shipped_recipes")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("elfctl's shipped recipes are missing from this install (no elfctl.shipped_recipes): "
                          "reinstall elfctl")
    return Path(list(spec.submodule_search_locations)[0])


def shipped_recipes() -> dict[str, Path]:
    """Name -> path of every shipped recipe, sorted by name."""
    return {p.stem.replace("_", "-"): p for p in sorted(recipes_dir().glob("*.yaml"))}


def find_recipe(ref: str, *, relative_to: Path | None = None) -> Path:
    """Resolve a recipe reference: an existing path, a name beside ``relative_to``, or a shipped name."""
    candidates = [Path(ref)]
    if relative_to is not None:
        candidates += [relative_to / ref, relative_to / f"{ref}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    shipped = shipped_recipes()
    key = ref[:-5] if ref.endswith(".yaml") else ref
    key = key.replace("_", "-")
    if key in shipped:
        return shipped[key]
    if Path(ref).suffix in (".yaml", ".yml") or "/" in ref:
        raise ConfigError(f"recipe file not found: {ref}")
    close = difflib.get_close_matches(key, list(shipped), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown recipe '{ref}'{hint}; shipped recipes: {', '.join(shipped)} "
                      f"(or give a path to a .yaml file)")
