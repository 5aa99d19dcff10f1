"""The root command: subcommands from entry points, plugin isolation, fast --help, exit codes."""

import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points

import elfctl.cli as cli

SIX = ("encode", "train", "sample", "eval", "ablate", "recipes")


def test_help_lists_the_six_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SIX)


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("elfctl ")


def test_help_and_version_do_not_import_torch():
    for flag in ("--help", "--version"):
        code = ("import sys; from elfctl.cli import main; main(['%s']); "
                "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')" % flag)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip().endswith("NO-TORCH"), out[-200:]


def test_python_m_elfctl():
    r = subprocess.run([sys.executable, "-m", "elfctl", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("elfctl ")


def _with_extra(monkeypatch, extra):
    real = list(entry_points(group=cli.ENTRY_POINT_GROUP))
    monkeypatch.setattr(cli, "entry_points", lambda group: real + extra)


def test_a_broken_plugin_costs_one_warning_line(monkeypatch, capsys):
    _with_extra(monkeypatch, [EntryPoint(name="broken", value="elfctl_no_such_module:cmd",
                                         group=cli.ENTRY_POINT_GROUP)])
    assert cli.main(["--help"]) == 0
    captured = capsys.readouterr()
    assert all(name in captured.out for name in SIX)
    warnings = [line for line in captured.err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "broken" in warnings[0] and warnings[0].startswith("warning:")
    assert cli.main(["recipes", "path", "owt"]) == 0  # other commands still work


def test_a_third_party_plugin_shows_in_its_own_panel(monkeypatch, tmp_path, capsys):
    (tmp_path / "my_elf_plugin.py").write_text(
        "def hello():\n    '''Say hello from a plugin.'''\n    print('hello from plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _with_extra(monkeypatch, [EntryPoint(name="hello", value="my_elf_plugin:hello", group=cli.ENTRY_POINT_GROUP)])
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Plugins" in out and "hello" in out.split("Plugins", 1)[1]
    assert cli.main(["hello"]) == 0
    assert "hello from plugin" in capsys.readouterr().out


def test_usage_error_exit_code_2(capsys):
    assert cli.main(["train"]) == 2  # missing RECIPE
    assert cli.main(["no-such-command"]) == 2


def test_debug_after_the_subcommand_is_the_root_option(capsys):
    # issue 19 item 13: the error hint says "run with --debug"; it used to work only before the subcommand
    from elfctl.errors import ConfigError

    assert cli.main(["recipes", "show", "no-such-recipe"]) == 2
    capsys.readouterr()
    for argv in (["--debug", "recipes", "show", "no-such-recipe"], ["recipes", "show", "no-such-recipe", "--debug"]):
        try:
            cli.main(argv)
        except ConfigError:
            continue   # --debug: the exception itself, with its traceback
        raise AssertionError(f"{argv}: --debug did not re-raise")
    assert cli._take_debug(["sample", "--", "--debug"]) == (["sample", "--", "--debug"], False)


def test_an_unknown_key_in_a_recipe_file_names_the_file(tmp_path, capsys):
    parent = tmp_path / "parent.yaml"
    parent.write_text("optim:\n  blrr: 0.001\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\ntrain:\n  steps: 3\n")
    assert cli.main(["train", str(child)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(parent.resolve()) in err[0] and "unknown key 'optim.blrr'" in err[0]
    assert "did you mean 'blr'" in err[0]
    child.write_text("traine:\n  steps: 3\n")
    assert cli.main(["train", str(child)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(child.resolve()) in err and "unknown section 'traine'" in err and "did you mean 'train'" in err
