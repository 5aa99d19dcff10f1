"""elfctl: train, sample, evaluate and ablate ELF (Embedded Language Flows) models."""

__version__ = "0.1.0"
