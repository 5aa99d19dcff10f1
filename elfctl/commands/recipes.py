"""`elfctl recipes`: list shipped recipes and print a fully resolved one."""

from __future__ import annotations

from typing import List, Optional

import typer

app = typer.Typer(help="List shipped recipes and show resolved configurations.", no_args_is_help=True)


@app.command("ls")
def ls() -> None:
    """List every shipped recipe with the paper table and row it reproduces."""
    from rich.console import Console
    from rich.table import Table

    from elfctl.config import load_config
    from elfctl.recipes import shipped_recipes

    table = Table(title="elfctl recipes")
    table.add_column("name", style="bold")
    table.add_column("reproduces")
    table.add_column("model")
    table.add_column("description")
    for name in shipped_recipes():
        cfg = load_config(name)
        table.add_row(name, cfg.paper or "-", cfg.model.preset, cfg.description)
    Console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Recipe name (owt) or path to a .yaml file."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides."),
) -> None:
    """Print the fully resolved configuration of a recipe (after extends and overrides)."""
    from elfctl.config import load_config

    cfg = load_config(name, overrides or [])
    typer.echo(cfg.to_yaml(), nl=False)


@app.command("path")
def path(name: str = typer.Argument(..., help="Recipe name.")) -> None:
    """Print the file path of a recipe (to copy and edit it)."""
    from elfctl.recipes import find_recipe

    typer.echo(str(find_recipe(name).resolve()))
