"""Ablation specs: a base recipe per scale plus named variants written as overrides.

An ablation is a YAML file::

    description: x-prediction vs v-prediction
    finding: x-prediction beats v-prediction        # the paper's claim this ablation tests
    scales:
      quick: {recipe: quickstart, overrides: [train.steps=300]}
      paper: {recipe: owt}
    variants:
      - {name: x-pred, train: [model.prediction=x]}
      - {name: v-pred, train: [model.prediction=v]}
    plot_x: sample.steps                            # optional: x axis of the "Gen PPL vs ..." plot

``train`` overrides change the trained model (variants with the same ones share one training run);
``sample`` overrides (``sample.*`` keys) change only how it is sampled. Built-in specs ship in this package;
users pass a path to their own.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from elfctl.config import parse_override
from elfctl.errors import ConfigError

SPEC_DIR = Path(__file__).resolve().parent
SAMPLE_KEYS = ("steps", "sampler", "gamma", "time_grid", "cfg", "sc_cfg", "num_samples", "batch_size", "seed")


@dataclass
class Variant:
    name: str
    train: list[str] = field(default_factory=list)
    sample: list[str] = field(default_factory=list)


@dataclass
class AblationSpec:
    name: str
    description: str
    finding: str
    scales: dict[str, dict]
    variants: list[Variant]
    plot_x: Optional[str] = None
    metrics: list[str] = field(default_factory=lambda: ["genppl"])

    def scale(self, scale: str) -> tuple[str, list[str]]:
        if scale not in self.scales:
            raise ConfigError(f"ablation '{self.name}' has no scale '{scale}'; it has: {', '.join(self.scales)}")
        s = self.scales[scale]
        return s["recipe"], list(s.get("overrides") or [])


def builtin_specs() -> dict[str, Path]:
    return {p.stem.replace("_", "-"): p for p in sorted(SPEC_DIR.glob("*.yaml"))}


def _strings(where: str, value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of 'section.key=value' strings")
    for v in value:
        parse_override(v)
    return value


def load_spec(ref: str) -> AblationSpec:
    """A built-in ablation by name, or a user's YAML file by path."""
    path = Path(ref)
    if not path.is_file():
        specs = builtin_specs()
        if ref not in specs:
            close = difflib.get_close_matches(ref, list(specs), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown ablation '{ref}'{hint}; built in: {', '.join(specs)} (or a path to a .yaml)")
        path = specs[ref]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}: malformed YAML" + (f" at line {mark.line + 1}" if mark else "")) from None
    allowed = {"description", "finding", "scales", "variants", "plot_x", "metrics"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(allowed))}")
    scales = data.get("scales") or {}
    if not scales or not all(isinstance(v, dict) and "recipe" in v for v in scales.values()):
        raise ConfigError(f"{path}: 'scales' must map scale names to {{recipe: NAME, overrides: [...]}}")
    for sname, s in scales.items():
        _strings(f"{path}: scales.{sname}.overrides", s.get("overrides"))
    variants = []
    for i, v in enumerate(data.get("variants") or []):
        if not isinstance(v, dict) or "name" not in v:
            raise ConfigError(f"{path}: variants[{i}] needs a name")
        sample = _strings(f"{path}: variants[{i}].sample", v.get("sample"))
        for s in sample:
            key = s.split("=", 1)[0]
            if not key.startswith("sample.") or key[7:] not in SAMPLE_KEYS:
                raise ConfigError(f"{path}: variants[{i}].sample: '{key}' is not a sample setting; valid: "
                                  + ", ".join(f"sample.{k}" for k in SAMPLE_KEYS))
        variants.append(Variant(str(v["name"]), _strings(f"{path}: variants[{i}].train", v.get("train")), sample))
    if not variants:
        raise ConfigError(f"{path}: an ablation needs at least one variant")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: variant names must be unique")
    return AblationSpec(name=path.stem.replace("_", "-"), description=str(data.get("description", "")),
                        finding=str(data.get("finding", "")), scales=scales, variants=variants,
                        plot_x=data.get("plot_x"), metrics=list(data.get("metrics") or ["genppl"]))
