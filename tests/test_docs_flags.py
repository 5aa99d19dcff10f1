"""The README names every option of `elfctl train` and `elfctl distill` (`train --fresh` was missing)."""

import inspect
import re
from pathlib import Path

import pytest
import typer

README = Path(__file__).resolve().parents[1] / "README.md"


def option_flags(command) -> list[str]:
    flags = []
    for p in inspect.signature(command).parameters.values():
        if isinstance(p.default, typer.models.OptionInfo):
            flags += [d for d in (p.default.param_decls or ()) if d.startswith("--")]
    return flags


@pytest.mark.parametrize("module, name", [("train", "train"), ("distill", "distill")])
def test_readme_names_every_option(module, name):
    import importlib

    command = getattr(importlib.import_module(f"elfctl.commands.{module}"), name)
    flags = option_flags(command)
    assert flags, f"elfctl {name} has no options?"
    row = next(line for line in README.read_text(encoding="utf-8").splitlines()
               if line.startswith(f"| `elfctl {name} "))
    missing = [f for f in flags if not re.search(rf"`{re.escape(f)}\b", row)]
    assert not missing, f"README's `elfctl {name}` row does not name {missing}"
