"""elfctl: train, sample, evaluate and ablate ELF (Embedded Language Flows) models."""

from elfctl._source_folders import install as _install_source_folders

__version__ = "0.1.0"

_install_source_folders()
