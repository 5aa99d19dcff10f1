"""`elfctl import SOURCE`: turn one of the authors' released checkpoints into an elfctl run directory."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def import_(
    source: str = typer.Argument(..., help="A hub repo id (embedded-language-flows/ELF-B-owt-torch, optionally "
                                 "/sub/folder), a checkpoint_<step> file, or a folder of them (highest step)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides of the imported run's "
                                                    "config, e.g. encoder.source=/path/to/t5-small."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to create (default: runs/<model name>)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Shipped recipe the model belongs to (default: "
                                         "from the source's name, else from the architecture: owt, owt-elf-m, "
                                         "owt-elf-l; an ELF-B for xsum or wmt14-de-en needs this)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the default run directory goes."),
) -> None:
    """Import an authors' ELF checkpoint (read with torch.load(weights_only=True) only) as an elfctl run.

    The run then works with `elfctl sample --run DIR` (the authors' sampling settings are its defaults),
    `elfctl eval`, and `elfctl train DIR/config.yaml` (continues from it with a fresh optimizer; give the training
    keys, e.g. train.epochs=null train.steps=N, as overrides here: a run's saved config is what it resumes under).
    """
    import time

    from elfctl.authors.importer import import_checkpoint

    t0 = time.perf_counter()
    res = import_checkpoint(source, out, recipe=recipe, overrides=overrides or [], runs_root=runs_dir,
                            note=lambda m: typer.echo(m, err=True))
    verb = "updated the config of" if res.reused else "imported"
    typer.echo(f"{verb} {source} ({res.arch.summary()}, step {res.step}, recipe {res.recipe}, sha256 "
               f"{res.sha256[:12]}) -> {res.run_dir} in {time.perf_counter() - t0:.1f}s")
    typer.echo(f"sample: elfctl sample --run {res.run_dir}")
