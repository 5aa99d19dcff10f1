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
