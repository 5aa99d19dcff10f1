"""The ``elfctl`` root command: finds its subcommands through the ``elfctl.commands`` entry points.

Built-in commands are registered exactly as a third-party plugin would be: an entry point in the group
``elfctl.commands`` whose object is either a ``typer.Typer`` (mounted as a command group) or a plain
function (mounted as one command). A plugin that fails to import costs one warning line on stderr.
No torch import happens here: ``elfctl --help`` and ``--version`` answer instantly.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Optional

import typer

from elfctl import __version__
from elfctl.errors import EXIT_RUNTIME, EXIT_USAGE, ElfError

ENTRY_POINT_GROUP = "elfctl.commands"
BUILTIN_DIST = "elfctl"
BUILTIN_PANEL = "Commands"
PLUGIN_PANEL = "Plugins"

# What to lower when a command runs out of GPU memory (torch.OutOfMemoryError anywhere in it).
_TRAIN_OOM = "train.micro_batch_size (examples per micro-step on each rank; train.batch_size, the global batch, can stay)"
OOM_SETTING = {"train": _TRAIN_OOM, "distill": _TRAIN_OOM,
               "ablate": "train.micro_batch_size or sample.batch_size in the ablation's base recipe",
               "sample": "--batch-size (sample.batch_size)", "eval": "--batch-size (eval.judge_batch_size)",
               "encode": "--batch-size"}


def _oom_line(e: Exception, args: list[str]) -> str:
    command = next((a for a in args if not a.startswith("-")), "")
    first = str(e).strip().splitlines()[0] if str(e).strip() else "no details"
    return (f"CUDA out of memory ({first.rstrip('.')}); lower "
            f"{OOM_SETTING.get(command, 'the batch size of this command')}")


# Set by the root callback; read by `main` to decide whether to show tracebacks.
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"elfctl {__version__}")
        raise typer.Exit()


def _root_callback(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors (also accepted after the "
                                                      "subcommand)."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """Train, sample, evaluate and ablate ELF (Embedded Language Flows) diffusion language models."""
    _state["debug"] = _state["debug"] or debug


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def build_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode="rich", context_settings={"help_option_names": ["-h", "--help"]})
    app.callback()(_root_callback)
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:
            _warn(f"plugin command '{ep.name}' ({ep.value}) is defined twice; keeping the first")
            continue
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the CLI
            _warn(f"plugin command '{ep.name}' ({ep.value}) failed to load: {type(e).__name__}: {e}")
            continue
        dist = getattr(ep, "dist", None)
        panel = BUILTIN_PANEL if dist is not None and dist.name == BUILTIN_DIST else PLUGIN_PANEL
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name, rich_help_panel=panel)
        elif callable(obj):
            app.command(name=ep.name, rich_help_panel=panel)(obj)
        else:
            _warn(f"plugin command '{ep.name}' ({ep.value}) is neither a Typer app nor a function")
            continue
        seen.add(ep.name)
    return app


def _take_debug(args: list[str]) -> tuple[list[str], bool]:
    """``--debug`` is a root option, but the error hint can be followed anywhere: accept it before or after the
    subcommand (not after a ``--`` separator, where arguments are passed on as they are)."""
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    return [a for a in args[:end] if a != "--debug"] + args[end:], debug


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; map user errors to one red line and an exit code."""
    app = build_app()
    args, debug = _take_debug(list(argv if argv is not None else sys.argv[1:]))
    _state["debug"] = debug
    try:
        result = app(args=args, prog_name="elfctl", standalone_mode=False)
    except ElfError as e:
        if debug:
            raise
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        return e.exit_code
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        typer.secho("aborted", fg=typer.colors.RED, err=True)
        return EXIT_RUNTIME
    except Exception as e:  # click usage errors and anything unexpected
        # typer vendors its own click: recognise its usage errors by shape, not by class
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
                e.show()  # a bare `elfctl train`: the help, not an error
                return e.exit_code or EXIT_USAGE
            # one line like every other error (click's own block adds the usage and a help hint on three more)
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} -h`)" if getattr(ctx, "command_path", None) else ""
            typer.secho(f"error: {' '.join(e.format_message().split())}{hint}", fg=typer.colors.RED, err=True)
            return e.exit_code or EXIT_USAGE
        if debug:
            raise
        if type(e).__name__ == "OutOfMemoryError":  # torch's, from any command (no torch import here)
            typer.secho(f"error: {_oom_line(e, args)}", fg=typer.colors.RED, err=True)
            return EXIT_RUNTIME
        typer.secho(f"error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                    fg=typer.colors.RED, err=True)
        return EXIT_RUNTIME
    # click returns the code of a typer.Exit (e.g. from --help) when not standalone
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
