"""`elfctl sample`: draw text from a trained ELF model (ODE/SDE, SC-CFG, CFG, prompts, infilling)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _parse_int_list(text: Optional[str], what: str) -> list[int]:
    from elfctl.errors import ConfigError

    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers, got {text!r}") from None


def sample(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A checkpoint directory (or file in one)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A run directory: its latest checkpoint."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the newest run is looked for by default."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the recipe's sample.steps)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="ode or sde."),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="SDE churn (0 = ODE)."),
    sc_cfg: Optional[float] = typer.Option(None, "--sc-cfg", help="Self-conditioning CFG scale."),
    cfg_scale: Optional[float] = typer.Option(None, "--cfg", help="Guidance scale of the model's condition; for an "
                                              "unconditional model that is its self-conditioning (= --sc-cfg)."),
    time_grid: Optional[str] = typer.Option(None, "--time-grid", help="uniform or logit_normal."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Number of samples."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds: one output file per seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output JSONL (default: <run>/samples/...)."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="Conditional: JSONL with an 'input' field "
                                              "(and optionally 'output', kept as the reference)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Conditional: one prompt text."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Infilling: pinned text at the start."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Infilling: pinned text at the end."),
    infill_length: Optional[int] = typer.Option(None, "--infill-length", help="Tokens generated between prefix "
                                                "and suffix (default: all the room left)."),
    trajectory: Optional[str] = typer.Option(None, "--trajectory", help="Record decoded text at these step "
                                             "indices, e.g. 0,8,16,31."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw weights instead of the EMA (default: the "
                                "recipe's sample.ema)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow loading a pickle weights file."),
    truncate: bool = typer.Option(False, "--truncate", help="Truncate prompts that do not fit (with a warning)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Sample text from a trained ELF model and write a JSONL file (a header line, then one line per sample)."""
    from elfctl.errors import ConfigError
    from elfctl.sampling.run import SampleRequest, run_sampling

    if checkpoint is not None and run is not None:
        raise ConfigError("give either --checkpoint or --run, not both")
    if (prefix or suffix) and (prompt or input_file):
        raise ConfigError("--prefix/--suffix (infilling) and --prompt/--input (conditioning) do not combine")
    if prompt and input_file:
        raise ConfigError("give either --prompt or --input, not both")
    req = SampleRequest(ref=checkpoint or run, runs_dir=runs_dir, steps=steps, sampler=sampler, gamma=gamma,
                        sc_cfg=sc_cfg, cfg=cfg_scale, time_grid=time_grid, num_samples=num_samples,
                        batch_size=batch_size, seeds=_parse_int_list(seeds, "--seeds") or ([seed] if seed is not None
                                                                                          else []),
                        out=out, input_file=input_file, prompt=prompt, prefix=prefix, suffix=suffix,
                        infill_length=infill_length, trajectory=_parse_int_list(trajectory, "--trajectory"),
                        ema=False if no_ema else None, trust_pickle=trust_pickle, truncate=truncate, device=device)
    for path, header in run_sampling(req, log=typer.echo):
        typer.echo(f"wrote {header['num_samples']} samples to {path} ({header['nfe']} forward passes per batch, "
                   f"{header['wall_time_s']:.1f}s)")
