"""The repository's top-level ``kernels/`` and ``recipes/`` folders as sub-packages of ``elfctl``.

Both are plain folders (no ``__init__.py``): a folder named ``kernels`` with an ``__init__.py`` at a checkout's root
would shadow Hugging Face's ``kernels`` package (which transformers imports) whenever the root is on ``sys.path``
(``python -m pytest``, ``python -m elfctl``). A wheel copies them to ``elfctl/kernels`` and
``elfctl/shipped_recipes`` (``pyproject.toml``'s ``package-dir``). Setuptools' default editable install cannot map a
folder without ``__init__.py`` into a package, and neither can a bare checkout on ``PYTHONPATH``: for those, this
finder answers the two names from the checkout's folders. It is inert in an installed wheel.
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

# sub-package name -> folder at the repository's root
SOURCE_FOLDERS = {"elfctl.kernels": "kernels", "elfctl.shipped_recipes": "recipes"}


class _CheckoutFolderFinder:
    """A meta-path finder that resolves each name in ``folders`` to a namespace package over its folder."""

    def __init__(self, folders: dict[str, Path]):
        self.folders = folders

    def find_spec(self, fullname, path=None, target=None):
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    def invalidate_caches(self) -> None:
        pass


def checkout_folders(package_dir: Path) -> dict[str, Path]:
    """Name -> folder for each sub-package that is not inside ``package_dir`` but sits beside it in a checkout."""
    root = package_dir.parent
    if not (root / "pyproject.toml").is_file():
        return {}
    found = {}
    for name, folder in SOURCE_FOLDERS.items():
        inside = package_dir / name.rpartition(".")[2]
        if not inside.is_dir() and (root / folder).is_dir():
            found[name] = root / folder
    return found


def install() -> None:
    folders = checkout_folders(Path(__file__).resolve().parent)
    if folders and not any(isinstance(f, _CheckoutFolderFinder) for f in sys.meta_path):
        sys.meta_path.append(_CheckoutFolderFinder(folders))
