"""`elfctl export RUN --format authors`: write a run's checkpoint in the authors' `checkpoint_<step>` format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

FORMATS = ("authors",)


def export(
    run: Path = typer.Argument(..., help="A run directory (its latest checkpoint) or a checkpoint directory."),
    fmt: str = typer.Option("authors", "--format", help="Output format: authors (their checkpoint_<step> "
                            "torch.save file: params, ema_params1, opt_state, step, epoch)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write checkpoint_<step> into "
                                       "(default: RUN/authors/)."),
) -> None:
    """Export a checkpoint for another codebase (the authors' loader on branch pytorch_elf accepts it)."""
    from elfctl.errors import ConfigError

    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not valid; choose {', '.join(FORMATS)}")
    from elfctl.authors.exporter import export_authors

    target = export_authors(run, out, note=lambda m: typer.echo(m, err=True))
    typer.echo(f"wrote {target}")
