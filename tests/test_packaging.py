"""Import names: nothing of elfctl's may collide with another package or with another module of its own.

The checkout's top-level ``kernels/`` and ``recipes/`` are plain folders: with the root first on ``sys.path``
(``python -m pytest``, ``python -m elfctl``), ``import kernels`` must still give Hugging Face's package, which
transformers imports when it loads a model. ``.ci/wheel_check.sh`` checks the built wheel's layout and a clean
install run from outside the checkout.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _from_root(code: str) -> subprocess.CompletedProcess:
    """Run ``python -c code`` the way ``python -m`` runs from the checkout: its root first on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def test_the_top_level_source_folders_are_not_packages():
    for folder in ("kernels", "recipes"):
        assert (ROOT / folder).is_dir()
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow a package"


def test_import_kernels_from_the_checkout_root_is_not_ours():
    out = _from_root("import kernels; print(getattr(kernels, '__file__', None))")
    assert out.returncode == 0, out.stderr
    where = out.stdout.strip()
    hf_installed = importlib.util.find_spec("kernels") is not None and \
        getattr(importlib.util.find_spec("kernels"), "origin", None) not in (None, "namespace")
    if hf_installed:  # Hugging Face's package wins over the plain folder
        assert where != "None" and Path(where).resolve().parent != (ROOT / "kernels").resolve(), where
    else:  # at most a namespace portion of the plain folder: no code of ours runs under that name
        assert where == "None"


def test_transformers_loads_a_model_from_the_checkout_root():
    # transformers 5.x imports Hugging Face's `kernels` when it builds a model: a shadowing folder broke this
    code = ("from transformers import BertConfig, BertModel; "
            "m = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, "
            "intermediate_size=16, vocab_size=32)); print(type(m).__name__)")
    out = _from_root(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "BertModel"


def test_python_dash_m_elfctl_works_from_the_checkout_root():
    out = subprocess.run([sys.executable, "-m", "elfctl", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "recipes" in out.stdout


def test_elfctl_recipes_is_one_module_and_the_shipped_recipes_resolve():
    import elfctl.recipes
    from elfctl.recipes import find_recipe, recipes_dir, shipped_recipes

    assert Path(elfctl.recipes.__file__).name == "recipes.py"
    assert not hasattr(elfctl.recipes, "__path__")  # a module, not a package
    assert (recipes_dir() / "quickstart.yaml").is_file()
    assert {"owt", "quickstart", "quickstart-pd"} <= set(shipped_recipes())
    assert find_recipe("owt") == recipes_dir() / "owt.yaml"


def test_the_kernels_subpackage_is_the_checkouts_folder():
    import elfctl.kernels.ops as ops

    assert Path(ops.__file__).resolve().parent == (ROOT / "kernels").resolve()
    assert callable(ops.guidance_step) and callable(ops.sde_noise_inject)


def test_the_checkout_finder_is_inert_where_the_package_holds_the_folders(tmp_path):
    from elfctl._source_folders import checkout_folders

    # a wheel: elfctl/kernels and elfctl/shipped_recipes exist inside the package; no pyproject beside it
    pkg = tmp_path / "site" / "elfctl"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "shipped_recipes").mkdir()
    (tmp_path / "site" / "kernels").mkdir()  # e.g. Hugging Face's kernels installed beside it
    assert checkout_folders(pkg) == {}
    # a checkout: the folders sit beside the package, next to pyproject.toml
    repo = tmp_path / "repo"
    (repo / "elfctl").mkdir(parents=True)
    (repo / "kernels").mkdir()
    (repo / "recipes").mkdir()
    (repo / "pyproject.toml").write_text("")
    assert checkout_folders(repo / "elfctl") == {"elfctl.kernels": repo / "kernels",
                                                 "elfctl.shipped_recipes": repo / "recipes"}


def test_every_package_of_the_source_tree_is_listed_for_the_wheel():
    # pyproject.toml lists its packages by hand (two of them are mapped folders): a new sub-package left out of the
    # list works in an editable install and is missing from every wheel (it happened: elfctl.families)
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "elfctl").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert {"elfctl.kernels", "elfctl.shipped_recipes"} <= listed


@pytest.mark.parametrize("dist", ["transformers", "datasets", "torch", "typer"])
def test_declared_lower_bounds_hold_for_what_is_installed(dist):
    # the bounds in pyproject.toml are the oldest releases CI has run the suite on (README: tested versions)
    from importlib.metadata import version

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert version(dist) in reqs[dist].specifier, f"{dist} {version(dist)} outside {reqs[dist].specifier}"
