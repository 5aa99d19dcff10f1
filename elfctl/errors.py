"""Errors a user can cause, and the exit codes the CLI maps them to.

Raise :class:`ConfigError` (exit 2) for anything the user can fix by changing a
flag, a recipe or an input file; raise :class:`ElfRuntimeError` (exit 1) for
failures while doing the work (a non-finite loss, a missing judge, ...). The CLI
prints ``error: <message>`` on one line and no traceback unless ``--debug``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class ElfError(Exception):
    """Base class: an error with a one-line message meant for the user."""

    exit_code = EXIT_RUNTIME


class ConfigError(ElfError):
    """Bad configuration or usage: unknown key, wrong type, bad file, bad flag."""

    exit_code = EXIT_USAGE


class ElfRuntimeError(ElfError):
    """The work itself failed (non-finite loss, unloadable asset, ...)."""

    exit_code = EXIT_RUNTIME
