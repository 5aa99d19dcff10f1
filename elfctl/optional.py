"""Packages only some commands need (HF ``datasets``, ``rouge-score``, ``sacrebleu``, ``pyarrow``), imported where
they are needed: a machine without them (the lent GPU machine has none of datasets, rouge-score, gguf) still imports
elfctl and runs every command that does not use them, and one that does gets one line naming the package, what
needs it and how to install it, instead of a traceback or an unrelated-sounding error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from elfctl.errors import ConfigError

# import name -> pip requirement
PIP_NAMES = {"datasets": "datasets", "rouge_score": "rouge-score", "sacrebleu": "sacrebleu", "pyarrow": "pyarrow",
             "gguf": "gguf"}


def require(module: str, needed_for: str) -> ModuleType:
    """``import module``, or a one-line :class:`ConfigError` naming it, ``needed_for`` and the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if getattr(e, "name", None) not in (module, module.split(".")[0]):
            raise  # the package is there but broken inside: its own error says more
        pip = PIP_NAMES.get(module.split(".")[0], module.split(".")[0])
        raise ConfigError(f"{needed_for} needs the '{pip}' package, which is not installed here; pip install "
                          f"'{pip}' (or install elfctl with its dependencies)") from None
