"""``elfctl import``: an authors' checkpoint becomes an ordinary elfctl run directory.

    RUN/config.yaml                      the resolved recipe (matching shipped recipe, inferred shape,
                                         the authors' sampling settings as sample.* defaults)
    RUN/provenance.json                  source, file, sha256, step, epoch, architecture, recipe
    RUN/checkpoints/step_<step>/         ema.safetensors (ema_params1: the sampling weights),
                                         model.safetensors (params), meta.json, config.yaml, train_state.pt
                                         (no optimizer state: training from here starts a fresh optimizer)

The directory is assembled under a hidden name beside RUN and renamed into place, so an interrupted import
leaves nothing half-written. Importing the same file again into the same RUN only rewrites the config (so
``encoder.source=DIR`` and the like can be changed later) while RUN holds nothing but the import; once trained
from it, RUN's config never changes, as for any run: another config is refused (choose another ``--out``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from elfctl import __version__
from elfctl.atomic import atomic_write_json, atomic_write_text
from elfctl.authors.architecture import Architecture, check_tensors, infer_architecture
from elfctl.authors.carried import build_carried_config
from elfctl.authors.keys import from_authors
from elfctl.authors.reading import read_checkpoint, sha256_file
from elfctl.authors.recipe import build_config, match_recipe
from elfctl.authors.source import ResolvedSource, looks_like_hub_id, resolve_source, split_hub_id
from elfctl.errors import ConfigError
from elfctl.rundir.names import CONFIG_NAME

PROVENANCE = "provenance.json"


@dataclass
class ImportResult:
    run_dir: Path
    checkpoint: Path
    recipe: str
    arch: Architecture
    step: int
    sha256: str
    reused: bool = False


def default_run_name(source: ResolvedSource, recipe: str, step: int) -> str:
    if source.hub_repo:
        return source.hub_repo.split("/")[1] + (f"-{source.hub_subfolder.replace('/', '-')}"
                                                if source.hub_subfolder else "")
    return f"authors-{recipe}-step{step}"


def read_provenance(run_dir: Path) -> Optional[dict]:
    try:
        return json.loads((Path(run_dir) / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tokenizer_source() -> str:
    """t5-small's own tokenizer when the hub answers, else the same vocabulary from the offline builtin."""
    from elfctl.data.assets import hub_reachable

    return "t5-small" if hub_reachable() else "builtin:t5-tokenizer"


def _encoder_note(cfg, run_dir: Path, source: str, note: Callable[[str], None]) -> None:
    if cfg.data.task != "conditional":
        return
    from elfctl.data.assets import resolve_asset

    try:
        resolve_asset(cfg.encoder.source, data_dir=cfg.data.data_dir)
    except ConfigError:
        note(f"note: this conditional model encodes its inputs with the {cfg.encoder.source} encoder, whose weights "
             f"are not available here; before sampling, download them where the hub is reachable and run "
             f"`elfctl import {source} --out {run_dir} encoder.source=/path/to/{cfg.encoder.source}`")


def _trained_further(run_dir: Path, step_dir: Path, cfg) -> bool:
    """Importing the same file again may change the run's settings only while the run is nothing but that import
    (False). Once trained from it (True), the run's saved config never changes, as for every run
    (elfctl/rundir/directory.py): a different config is refused, the same one changes nothing."""
    from elfctl.config import load_resolved
    from elfctl.rundir import checkpoint as ckpt
    from elfctl.rundir.directory import describe_differences

    trained = [p for p in ckpt.list_checkpoints(run_dir) if p.resolve() != step_dir.resolve()]
    if not trained or not (run_dir / CONFIG_NAME).is_file():
        return False
    diffs = describe_differences(load_resolved(run_dir / CONFIG_NAME).to_dict(), cfg.to_dict())
    if diffs:
        raise ConfigError(f"--out: {run_dir} was trained on from this import (to {trained[-1].name}) under its saved "
                          f"config, which never changes ({len(diffs)} difference{'s' if len(diffs) > 1 else ''}: "
                          f"{'; '.join(diffs)}); choose another --out for the new settings, or remove {run_dir}")
    return True


def import_checkpoint(source: str, out: Optional[Path] = None, *, recipe: Optional[str] = None,
                      overrides: Sequence[str] = (), runs_root: Path = Path("runs"),
                      note: Callable[[str], None] = print) -> ImportResult:
    """Import ``source`` (hub id, file or folder) into the run directory ``out`` (default runs/<name>)."""
    resolved = resolve_source(source)
    ckpt = read_checkpoint(resolved.file)
    what = str(resolved.file)
    arch = infer_architecture(ckpt.params, what=f"{what} (params)")
    if ckpt.ema is None:
        note(f"note: {resolved.file.name} has no ema_params1; its raw params become the sampling weights too "
             f"(as the authors' loader does)")
    else:
        check_tensors(ckpt.ema, arch, what=f"{what} (ema_params1)")
    if ckpt.carried is not None:  # an elfctl export: it says its encoder, tokenizer, recipe and settings
        recipe_name = recipe or str(ckpt.carried.get("name") or "unnamed")
    else:
        recipe_name = match_recipe(arch, source, recipe, note)
    run_dir = Path(out) if out is not None else Path(runs_root) / default_run_name(resolved, recipe_name, ckpt.step)
    if ckpt.carried is not None:
        cfg = build_carried_config(arch, ckpt.carried, source, recipe=recipe, run_dir=run_dir, step=ckpt.step,
                                   overrides=overrides)
    else:
        cfg = build_config(arch, recipe_name, source, run_dir=run_dir, step=ckpt.step,
                           tokenizer=_tokenizer_source(), overrides=overrides)
    digest = sha256_file(resolved.file)
    step_dir = run_dir / "checkpoints" / f"step_{ckpt.step:08d}"

    previous = read_provenance(run_dir) if run_dir.exists() else None
    if run_dir.exists() and any(run_dir.iterdir()):
        if previous is None or previous.get("sha256") != digest:
            raise ConfigError(f"--out: {run_dir} already exists and holds something else; choose another --out or "
                              f"remove it")
        if not _trained_further(run_dir, step_dir, cfg):
            for path in (run_dir / CONFIG_NAME, step_dir / CONFIG_NAME):  # same weights: refresh the settings
                atomic_write_text(path, cfg.to_yaml())
        _encoder_note(cfg, run_dir, source, note)
        return ImportResult(run_dir, step_dir, recipe_name, arch, ckpt.step, digest, reused=True)

    provenance = {"source": source, "file": str(resolved.file.resolve()), "hub_repo": resolved.hub_repo,
                  "hub_subfolder": resolved.hub_subfolder, "sha256": digest, "bytes": resolved.file.stat().st_size,
                  "step": ckpt.step, "epoch": ckpt.epoch, "entries": ckpt.entries, "recipe": recipe_name,
                  "architecture": arch.to_dict(), "ema_params1": ckpt.ema is not None,
                  "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "elfctl_version": __version__}
    keys = list(arch.build("meta").state_dict())
    raw = from_authors(ckpt.params, keys)
    ema = from_authors(ckpt.ema, keys) if ckpt.ema is not None else raw
    meta = {"latent_dim": arch.latent_dim, "vocab_size": arch.vocab_size, "preset": cfg.model.preset,
            "prediction": "x", "imported_from": {k: provenance[k] for k in ("source", "sha256", "step", "epoch")},
            "elfctl_version": __version__}

    from elfctl.rundir.checkpoint import save_checkpoint

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / f".{run_dir.name}.import-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_checkpoint(tmp, ckpt.step, model_state=raw, ema_state=ema,
                        train_state={"optimizers": None, "step": ckpt.step}, meta=meta, config_yaml=cfg.to_yaml())
        atomic_write_text(tmp / CONFIG_NAME, cfg.to_yaml())
        atomic_write_json(tmp / PROVENANCE, provenance)
        if run_dir.exists():
            run_dir.rmdir()  # empty (checked above)
        os.replace(tmp, run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _encoder_note(cfg, run_dir, source, note)
    return ImportResult(run_dir, step_dir, recipe_name, arch, ckpt.step, digest)


# --------------------------------------------------------------------------- the import cache of `elfctl sample`

def cache_dir_for(source: str, data_dir: Optional[str] = None) -> tuple[Path, Optional[ResolvedSource]]:
    """Where ``source`` is (or would be) imported in the cache; a hub id is not resolved when already there."""
    from elfctl.data.assets import cache_root

    root = cache_root(data_dir) / "imports"
    path = Path(source).expanduser()
    if not path.exists() and looks_like_hub_id(source):
        repo, sub = split_hub_id(source)
        return root / "--".join([*repo.split("/"), *(sub.split("/") if sub else [])]), None
    resolved = resolve_source(source)
    st = resolved.file.stat()
    key = hashlib.sha256(f"{resolved.file.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return root / f"{resolved.file.name}-{key}", resolved


def import_cached(source: str, *, note: Callable[[str], None] = print, data_dir: Optional[str] = None) -> Path:
    """The run directory of ``source`` in the import cache, importing it the first time."""
    run_dir, _ = cache_dir_for(source, data_dir)
    if read_provenance(run_dir) is not None:
        return run_dir
    t0 = time.perf_counter()
    res = import_checkpoint(source, run_dir, note=note)
    note(f"imported {source} ({res.arch.summary()}, step {res.step}, recipe {res.recipe}) into {run_dir} in "
         f"{time.perf_counter() - t0:.1f}s (once; later runs reuse it)")
    return run_dir
