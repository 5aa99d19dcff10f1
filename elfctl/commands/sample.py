"""`elfctl sample`: draw text from a trained ELF model (ODE/SDE, SC-CFG, CFG, prompts, infilling).

The sampler-setting options (``--steps``, ``--gamma``, ``--sc-cfg``, ``--bf16/--no-bf16``, ...) are not written
here: :func:`_with_sample_options` makes one per field of the recipe's ``sample`` section
(``elfctl.config.SampleConfig``), with its help text, so a new setting appears here by itself.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Optional

import typer

_PREFIX = "sample__"  # parameter names of the generated options (never clash with the command's own)


def _parse_int_list(text: Optional[str], what: str) -> list[int]:
    from elfctl.errors import ConfigError

    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None


def _with_sample_options(command):
    """Add one option per ``sample`` setting to ``command``; it receives those given as ``settings={key: value}``."""
    from elfctl.sampling.settings import sample_options

    sig = inspect.signature(command, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "settings"]
    added = []
    for key, flag, tp, help_text in sample_options():
        decl = f"{flag}/--no-{flag[2:]}" if tp is bool else flag
        option = typer.Option(None, decl, help=f"{help_text} (default: the recipe's sample.{key})",
                              show_default=False, rich_help_panel="Sampler settings (override the recipe)")
        added.append(inspect.Parameter(_PREFIX + key, inspect.Parameter.KEYWORD_ONLY, default=option,
                                       annotation=Optional[tp]))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        settings = {k[len(_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(_PREFIX)}
        return command(settings={k: v for k, v in settings.items() if v is not None}, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
    wrapper.__signature__ = sig.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
    return wrapper


@_with_sample_options
def sample(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A checkpoint directory (or file in one)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A run directory: its latest checkpoint."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the newest run is looked for by default."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds: one output file per seed "
                                        "(instead of --seed)."),
    out: Optional[str] = typer.Option(None, "--out", help="Output JSONL, or a directory (existing, or ending in "
                                      "'/') for the default name inside it (default: <run>/samples/...)."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Conditional: JSONL with an 'input' field "
                                              "(and optionally 'output', kept as the reference)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Conditional: one prompt text."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Infilling: pinned text at the start."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Infilling: pinned text at the end."),
    infill_length: Optional[int] = typer.Option(None, "--infill-length", help="Tokens generated between --prefix "
                                                "and --suffix (default: all the room left)."),
    trajectory: Optional[str] = typer.Option(None, "--trajectory", help="Record the decoded text after every step "
                                             "('all') or at these step indices (e.g. 0,8,16,31), for `elfctl "
                                             "view`; each costs one decode pass per batch."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading a pickle weights file."),
    truncate: bool = typer.Option(False, "--truncate", help="Truncate prompts that do not fit (with a warning)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    settings: Optional[dict] = None,
) -> None:
    """Sample text from a trained ELF model and write a JSONL file (a header line, then one line per sample)."""
    from elfctl.errors import ConfigError
    from elfctl.sampling.run import SampleRequest, run_sampling
    from elfctl.sampling.trajectory import parse_trajectory

    if checkpoint is not None and run is not None:
        raise ConfigError("give either --checkpoint or --run, not both")
    req = SampleRequest(ref=checkpoint or run, settings=settings or {}, seeds=_parse_int_list(seeds, "--seeds"),
                        out=out, runs_dir=runs_dir, input_file=input_file, prompt=prompt, prefix=prefix,
                        suffix=suffix, infill_length=infill_length,
                        trajectory=parse_trajectory(trajectory), trust_pickle=trust_pickle,
                        truncate=truncate, device=device, flag_names=True)
    for path, header in run_sampling(req, log=typer.echo):
        typer.echo(f"wrote {header['num_samples']} samples to {path} ({header['nfe']} forward passes per batch, "
                   f"{header['wall_time_s']:.1f}s)")
