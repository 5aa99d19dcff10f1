"""elfctl where HF ``datasets``, ``rouge-score`` and ``gguf`` are not installed (the lent GPU machine has none of
them): every command still loads, training on local files works, and a command that needs one of them says so in
one line. The packages are hidden by a meta-path finder in a child process, so this runs whatever is installed."""

import json
import subprocess
import sys
import textwrap

import pytest

from elfctl.errors import ConfigError

HIDDEN = ("datasets", "rouge_score", "gguf")

# A child-process prelude that hides the packages as if they were not installed: the path finder no longer sees
# them, so `import datasets` raises ModuleNotFoundError and importlib.util.find_spec("datasets") is None (what
# transformers checks before importing it).
HIDE = textwrap.dedent(f"""
    import importlib.machinery, sys
    class Hide(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in {HIDDEN!r}:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)
    sys.meta_path = [Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
""")


def _child(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_every_command_loads_without_datasets_rouge_gguf():
    p = _child("""
        import importlib, json
        for m in ("datasets", "rouge_score", "gguf"):
            try:
                importlib.import_module(m)
                raise SystemExit(f"{m} was not hidden")
            except ModuleNotFoundError:
                pass
        from elfctl.cli import build_app
        from elfctl.config import load_config
        app = build_app()
        load_config("owt")
        print(json.dumps(sorted(c.name for c in app.registered_commands) + sorted(g.name for g in app.registered_groups)))
    """)
    assert p.returncode == 0, p.stderr
    assert "failed to load" not in p.stderr and "warning" not in p.stderr, p.stderr
    names = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"train", "sample", "eval", "ablate", "distill", "encode", "recipes", "import", "export"} <= set(names)


@pytest.mark.slow
def test_train_and_sample_on_local_files_without_datasets(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    out = tmp_path / "s.jsonl"
    p = _child(f"""
        from elfctl.cli import main
        assert main(["--debug", "train", {recipe!r}]) == 0
        assert main(["sample", "--run", {str(tmp_path / 'run')!r}, "--out", {str(out)!r}]) == 0
    """)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["type"] == "header" and sum(r["type"] == "sample" for r in rows) == 3


def test_a_hub_dataset_without_datasets_is_one_line():
    p = _child("""
        from elfctl.cli import main
        raise SystemExit(main(["encode", "quickstart", "data.dataset=someone/some-set", "--out", "/nonexistent/x"]))
    """)
    err = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2, p.stderr
    assert err == ["error: data.dataset 'someone/some-set' (a hub dataset) needs the 'datasets' package, which is not "
                   "installed here; pip install 'datasets' (or install elfctl with its dependencies)"]


def test_metrics_without_their_packages_are_one_line(monkeypatch):
    from elfctl.eval import text_metrics

    monkeypatch.setitem(sys.modules, "rouge_score", None)  # `import rouge_score` now fails as if absent
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)  # even after an earlier test imported it
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(ConfigError) as e:
        text_metrics.rouge_per_sample(["a b"], ["a b"])
    assert str(e.value) == ("ROUGE (--metric rouge) needs the 'rouge-score' package, which is not installed here; "
                            "pip install 'rouge-score' (or install elfctl with its dependencies)")
    with pytest.raises(ConfigError, match=r"^BLEU \(--metric bleu\) needs the 'sacrebleu' package"):
        text_metrics.bleu(["a b"], ["a b"])


def test_a_broken_installed_package_keeps_its_own_error(monkeypatch):
    from elfctl.optional import require

    class Broken:  # a package that is there but fails inside: not reported as "not installed"
        def find_spec(self, name, path=None, target=None):
            if name == "elfctl_broken_pkg":
                raise ModuleNotFoundError("No module named 'its_missing_dependency'", name="its_missing_dependency")

    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(ModuleNotFoundError, match="its_missing_dependency"):
        require("elfctl_broken_pkg", "a test")


@pytest.mark.parametrize("packing,task,keep_blanks", [(True, "unconditional", False), (False, "unconditional", True),
                                                       (False, "conditional", False), (False, "conditional", True)])
def test_local_token_cache_schema_is_the_datasets_features_schema(packing, task, keep_blanks):
    """Local files are tokenized into Arrow with a schema made without HF datasets: the same column names, order
    and types as its Features (which hub sources still use), so both kinds of cache read alike."""
    pytest.importorskip("datasets")
    from elfctl.config import DataConfig
    from elfctl.data.tokenized import TokenizeBatch

    fn = TokenizeBatch(None, DataConfig(packing=packing, task=task), ("text",), keep_blanks=keep_blanks)
    ours, theirs = fn.arrow_schema(), fn.features().arrow_schema
    assert ours.names == theirs.names and len(ours.names) >= 1
    assert [f.type for f in ours] == [f.type for f in theirs]
