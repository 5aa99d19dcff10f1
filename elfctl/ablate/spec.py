"""Ablation specs: a base recipe per scale plus named variants written as overrides (format: docs/ABLATIONS.md).

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
    metrics: [genppl]                               # optional: what `eval` scores (default genppl)
    seeds: [0, 1, 2]                                # optional: sample every variant with each seed (mean ± std);
                                                    # a scale may set its own: {recipe: small, seeds: [0, 1, 2]}
    baselines: true                                 # optional: also score held-out data and random tokens once

A variant may name its ``series`` (a line of the plots; default: the model, or teacher / student).

``train`` overrides change the trained model (variants with the same ones share one training run);
``sample`` overrides (``sample.*`` keys) change only how it is sampled. The spec is as strict as a recipe: an
unknown key anywhere (``sampel:``), a key of the wrong kind, an override that names no recipe key or a value
out of range is a one-line error naming the file and the place, with a did-you-mean hint, before any work.
Built-in specs ship in this package; users pass a path to their own.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from elfctl.config import SECTIONS, load_config, parse_override
from elfctl.errors import ConfigError

SPEC_DIR = Path(__file__).resolve().parent
TOP_KEYS = ("description", "finding", "scales", "variants", "plot_x", "metrics", "seeds", "baselines")
# distill: the distillation recipe of `distill: true` variants; seeds: this scale's sampling seeds (replace the spec's)
SCALE_KEYS = ("recipe", "overrides", "distill", "seeds")
VARIANT_KEYS = ("name", "train", "sample", "distill", "series")


@dataclass
class Variant:
    name: str
    train: list[str] = field(default_factory=list)
    sample: list[str] = field(default_factory=list)
    distill: bool = False       # sample the distilled student of the trained model (elfctl.ablate.distill_step)
    series: Optional[str] = None  # the line it belongs to in the plots

    def sample_settings(self) -> dict:
        """``sample.steps=8`` → ``{"steps": 8}`` (the keys ``SampleRequest.settings`` takes)."""
        return sample_settings(self.sample)


@dataclass
class AblationSpec:
    name: str
    description: str
    finding: str
    scales: dict[str, dict]
    variants: list[Variant]
    plot_x: Optional[str] = None
    metrics: list[str] = field(default_factory=lambda: ["genppl"])
    path: Optional[Path] = None
    seeds: list[int] = field(default_factory=list)   # empty: the variant's sample.seed
    baselines: bool = False

    def scale(self, scale: str) -> tuple[str, list[str]]:
        if scale not in self.scales:
            raise ConfigError(f"--scale: ablation '{self.name}' has no scale '{scale}'{_hint(scale, self.scales)}; "
                              f"it has: {', '.join(self.scales)}")
        s = self.scales[scale]
        return s["recipe"], list(s.get("overrides") or [])

    def at_scale(self, scale: str) -> "AblationSpec":
        """This spec as run at one scale: a scale's own ``seeds`` replace the spec's."""
        self.scale(scale)  # the one-line error for an unknown scale
        seeds = self.scales[scale].get("seeds")
        return self if seeds is None else dataclasses.replace(self, seeds=list(seeds))


def sample_settings(overrides: list[str]) -> dict:
    """The ``sample.*`` overrides of a list, keyed by setting name."""
    out = {}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] == "sample":
            out[parts[1]] = value
    return out


def builtin_specs() -> dict[str, Path]:
    return {p.stem.replace("_", "-"): p for p in sorted(SPEC_DIR.glob("*.yaml"))}


def _hint(key, valid) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(where: str, data: dict, valid: tuple[str, ...]) -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(f"{where}: unknown key '{key}'{_hint(key, valid)}; valid: {', '.join(valid)}")


def _mapping(where: str, value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping ({what}), got {type(value).__name__}")
    return value


def _strings(where: str, value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of 'section.key=value' strings")
    for v in value:
        try:
            parse_override(v)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return value


def _check_sample_overrides(where: str, overrides: list[str]) -> None:
    from elfctl.sampling.settings import sample_keys

    keys = sample_keys()
    for text in overrides:
        parts, _ = parse_override(text)
        if len(parts) != 2 or parts[0] != "sample":
            raise ConfigError(f"{where}: '{text.split('=', 1)[0]}' is not a sample setting (train settings go under "
                              f"'train:'); valid: " + ", ".join(f"sample.{k}" for k in keys))
        if parts[1] not in keys:
            raise ConfigError(f"{where}: unknown sample setting 'sample.{parts[1]}'{_hint(parts[1], keys)}; valid: "
                              + ", ".join(f"sample.{k}" for k in keys))


def _check_against_recipe(where: str, recipe: str, overrides: list[str]) -> None:
    """Every override names a real recipe key with a valid value (the recipe's own rules, one line)."""
    try:
        load_config(recipe, overrides)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"{path}: malformed YAML" + (f" at line {mark.line + 1}" if mark else "")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    return _mapping(str(path), data, "an ablation spec")


def _scales(path: Path, data: dict) -> dict[str, dict]:
    scales = _mapping(f"{path}: scales", data.get("scales") or {}, "scale name -> {recipe: NAME, overrides: [...]}")
    if not scales:
        raise ConfigError(f"{path}: 'scales' must map scale names to {{recipe: NAME, overrides: [...]}}")
    for name, s in scales.items():
        where = f"{path}: scales.{name}"
        _check_keys(where, _mapping(where, s, "{recipe: NAME, overrides: [...]}"), SCALE_KEYS)
        if not isinstance(s.get("recipe"), str):
            raise ConfigError(f"{where}: needs 'recipe: NAME' (a recipe name or path)")
        if "distill" in s and not isinstance(s["distill"], str):
            raise ConfigError(f"{where}.distill: must be a distillation recipe name or path")
        _strings(f"{where}.overrides", s.get("overrides"))
        if "seeds" in s:
            _seeds(Path(where), s)
    return scales


def _variants(path: Path, data: dict) -> list[Variant]:
    raw = data.get("variants") or []
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: variants: must be a list of {{name, train, sample}} mappings")
    variants = []
    for i, v in enumerate(raw):
        where = f"{path}: variants[{i}]"
        _check_keys(where, _mapping(where, v, "{name, train, sample}"), VARIANT_KEYS)
        if "name" not in v:
            raise ConfigError(f"{where}: needs a name")
        sample = _strings(f"{where}.sample", v.get("sample"))
        _check_sample_overrides(f"{where}.sample", sample)
        train = _strings(f"{where}.train", v.get("train"))
        distill = v.get("distill", False)
        if not isinstance(distill, bool):
            raise ConfigError(f"{where}.distill: must be true or false, got {distill!r}")
        series = v.get("series")
        if series is not None and not isinstance(series, str):
            raise ConfigError(f"{where}.series: must be a name (a line of the plots), got {series!r}")
        variants.append(Variant(str(v["name"]), train, sample, distill, series))
    if not variants:
        raise ConfigError(f"{path}: an ablation needs at least one variant")
    names = [v.name for v in variants]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise ConfigError(f"{path}: variant name '{dup}' is used twice; names must be unique")
    return variants


def _metrics(path: Path, data: dict) -> list[str]:
    from elfctl.eval.report import parse_metrics

    raw = data.get("metrics") or ["genppl"]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise ConfigError(f"{path}: metrics: must be a list of metric names (e.g. [genppl, diversity])")
    try:
        parse_metrics(",".join(raw))
    except ConfigError as e:
        raise ConfigError(f"{path}: metrics: {str(e).split(': ', 1)[1]}") from None
    return raw


def _plot_x(path: Path, data: dict) -> Optional[str]:
    plot_x = data.get("plot_x")
    if plot_x is None:
        return None
    if not isinstance(plot_x, str) or plot_x.count(".") != 1:
        raise ConfigError(f"{path}: plot_x: must be a section.key the variants set (e.g. sample.steps)")
    section, key = plot_x.split(".")
    if section not in SECTIONS:
        raise ConfigError(f"{path}: plot_x: unknown section '{section}'{_hint(section, SECTIONS)}; valid: "
                          f"{', '.join(SECTIONS)}")
    keys = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if key not in keys:
        raise ConfigError(f"{path}: plot_x: unknown key '{plot_x}'{_hint(key, keys)}; valid keys of '{section}': "
                          f"{', '.join(keys)}")
    return plot_x


def _seeds(path: Path, data: dict) -> list[int]:
    raw = data.get("seeds") or []
    if (not isinstance(raw, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in raw)
            or len(set(raw)) != len(raw)):
        raise ConfigError(f"{path}: seeds: must be a list of distinct integers (e.g. [0, 1, 2]), got {raw!r}")
    return raw


def _baselines(path: Path, data: dict) -> bool:
    raw = data.get("baselines", False)
    if not isinstance(raw, bool):
        raise ConfigError(f"{path}: baselines: must be true or false, got {raw!r}")
    return raw


def load_spec(ref: str) -> AblationSpec:
    """A built-in ablation by name, or a user's YAML file by path; validated against its recipes."""
    path = Path(ref)
    if not path.is_file():
        specs = builtin_specs()
        if ref not in specs:
            raise ConfigError(f"unknown ablation '{ref}'{_hint(ref, specs)}; built in: {', '.join(specs)} (or a path "
                              f"to a .yaml)")
        path = specs[ref]
    data = _read(path)
    _check_keys(str(path), data, TOP_KEYS)
    scales, variants = _scales(path, data), _variants(path, data)
    spec = AblationSpec(name=path.stem.replace("_", "-"), description=str(data.get("description", "")),
                        finding=str(data.get("finding", "")), scales=scales, variants=variants,
                        plot_x=_plot_x(path, data), metrics=_metrics(path, data), path=path,
                        seeds=_seeds(path, data), baselines=_baselines(path, data))
    return spec


def check_scale(spec: AblationSpec, scale: str, extra: list[str] = ()) -> None:
    """Before any work: every variant's overrides, over the scale's recipe and the command line's, load."""
    recipe, base = spec.scale(scale)
    where = f"{spec.path or spec.name}: scales.{scale}"
    for v in spec.variants:
        _check_against_recipe(f"{where}, variant '{v.name}'", recipe, [*base, *extra, *v.train, *v.sample])
