"""Property-based: generated malformed input at every loader a user touches ends in one clear line or is accepted.

Targets: recipe YAML files, ``section.key=value`` overrides, JSONL / text datasets, samples files for ``eval``,
and the numbers given to CLI flags. A case passes when the command exits 0, or exits 2 with exactly one line on
stderr and no traceback; through the Python loaders, when it returns or raises a one-line ConfigError. Anything
else (exit 1 with ``error: TypeError ...``, a traceback, a multi-line message) is a finding.

``ELFCTL_FUZZ_EXAMPLES`` sets the cases per target (default 25, derandomised so CI is repeatable); the numbers in
docs/RELIABILITY.md come from a larger, randomised campaign:
``ELFCTL_FUZZ_EXAMPLES=1000 ELFCTL_FUZZ_RANDOM=1 python -m pytest -q tests/test_fuzz_inputs.py``.
"""

import contextlib
import dataclasses
import io
import json
import math
import os
import string

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from elfctl.cli import main  # noqa: E402
from elfctl.config import SECTIONS, TOP_LEVEL_SCALARS, load_config  # noqa: E402
from elfctl.errors import ConfigError  # noqa: E402

EXAMPLES = int(os.environ.get("ELFCTL_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("ELFCTL_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), database=None)
KEYS = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
COUNTS: dict[str, int] = {}


def _count(target: str) -> None:
    COUNTS[target] = COUNTS.get(target, 0) + 1


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def assert_clear(code: int, err: str, what: str) -> None:
    """Exit 0, or exit 2 with one line and no traceback."""
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    assert code in (0, 2), f"{what}: exit {code}: {err.strip()}"
    if code == 2:
        assert len(lines) == 1, f"{what}: {len(lines)} lines:\n{err}"


def assert_loader_clear(fn, what: str):
    try:
        return fn()
    except ConfigError as e:
        assert "\n" not in str(e), f"{what}: multi-line error {str(e)!r}"
        return None


# ----------------------------------------------------------------------- strategies

NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", ".nan", "NaN", "inf", "-inf", ".inf", "-.inf", "1e400", "-0", "0x10", "1_000", "1e-400",
                     "", " ", "true", "null", "~", "[]", "{}", "[1, 2]", "{a: 1}", "'1'", "\"2\"", "1.5.2", "--1",
                     "1e", "e5", "∞", "１", "0" * 400, "9" * 40, "-9" * 20]),
    st.integers().map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=string.digits + ".-+eE_xX", max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                      max_leaves=6)
SECTION_KEYS = st.sampled_from(list(SECTIONS) + list(TOP_LEVEL_SCALARS) + ["extends", "modle", "train.steps"])
FIELD_NAMES = st.sampled_from(sorted({k.split(".")[1] for k in KEYS}) + ["nope", "steps ", ""])


@st.composite
def recipe_texts(draw):
    kind = draw(st.sampled_from(["structured", "mutated", "raw"]))
    if kind == "structured":
        data = draw(st.dictionaries(SECTION_KEYS | st.text(max_size=6),
                                    st.dictionaries(FIELD_NAMES | st.text(max_size=6), VALUES | NUMBER_TEXT, max_size=4)
                                    | VALUES, max_size=4))
        return yaml.safe_dump(data, allow_unicode=True)
    base = ("name: fuzz\nmodel:\n  preset: elf-tiny\n  depth: 1\noptim:\n  lr: 0.001\n  schedule: cosine\n"
            "train:\n  steps: 10\n  batch_size: 4\nsample:\n  gamma: 1.5\n  cfg: 2.0\n")
    if kind == "mutated":
        chars = list(base)
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(chars)))
            if draw(st.booleans()) and i < len(chars):
                del chars[i]
            else:
                chars.insert(i, draw(st.sampled_from(list(":-[]{}&*!|>'\"#%@`\t\n ,?") + ["\x00", "\ufeff", "é"])))
        return "".join(chars)
    return draw(st.text(max_size=200))


OVERRIDES = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), NUMBER_TEXT | st.text(max_size=15)),
    st.text(max_size=30),
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=12), st.text(max_size=8)))


# ----------------------------------------------------------------------- recipes and overrides

@FUZZ
@given(text=recipe_texts())
def test_fuzz_recipe_yaml(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _count("recipe YAML")
    assert_loader_clear(lambda: load_config(str(path)), f"recipe {text!r}")


def test_fuzz_recipe_yaml_through_the_cli(tmp_path):
    # the CLI path of the same loader (exit codes and one line): a few fixed bad recipes
    for text in ("optim: {lr: .nan}\n", "model: [1, 2]\n", "extends: /\n", "train:\n  steps: 1e400\n", "\x00",
                 "sample: {gamma: !!python/object:os.system x}\n", "a: &x [*x]\n", "extends: r\n"):
        p = tmp_path / "r.yaml"
        p.write_text(text)
        assert_clear(*run_cli(["recipes", "show", str(p)]), f"recipe {text!r}")


@FUZZ
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_fuzz_overrides(overrides):
    _count("overrides")
    assert_loader_clear(lambda: load_config("quickstart", overrides), f"overrides {overrides!r}")


# ----------------------------------------------------------------------- datasets

JSONL_LINES = st.one_of(VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
                        st.dictionaries(st.sampled_from(["text", "input", "output", "x"]), VALUES, max_size=3)
                        .map(lambda d: json.dumps(d, allow_nan=True)),
                        st.text(max_size=40))


@FUZZ
@given(kind=st.sampled_from(["jsonl", "txt", "json"]), task=st.sampled_from(["unconditional", "conditional"]),
       body=st.one_of(st.lists(JSONL_LINES, max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
                      st.binary(max_size=200)))
def test_fuzz_datasets(tmp_path_factory, kind, task, body):
    from elfctl.data.text_sources import load_records

    path = tmp_path_factory.mktemp("data") / f"d.{kind}"
    path.write_bytes(body)
    _count("datasets")
    cfg = load_config(None, [f"data.dataset={path}", f"data.task={task}"])
    records = assert_loader_clear(lambda: load_records(cfg.data, "train"), f"{kind} dataset {body!r}")
    if records is not None:
        fields = ("input", "output") if task == "conditional" else ("text",)
        assert all(isinstance(r.get(f), str) for r in records for f in fields), records[:3]


# ----------------------------------------------------------------------- samples files for eval

HEADERS = st.one_of(st.none(), st.fixed_dictionaries({"type": st.just("header")},
                                                     optional={"run": VALUES, "step": VALUES, "sampler": VALUES,
                                                               "seed": VALUES, "protocol": VALUES}))
ROWS = st.one_of(st.fixed_dictionaries({"text": SCALARS}, optional={"token_ids": VALUES, "input": VALUES}),
                 VALUES)


@FUZZ
@given(header=HEADERS, rows=st.lists(ROWS, max_size=5), junk=st.one_of(st.none(), st.text(max_size=20)),
       suffix=st.sampled_from([".jsonl", ".txt", ".JSONL", ".json"]))
def test_fuzz_samples_files_for_eval(tmp_path_factory, header, rows, junk, suffix):
    d = tmp_path_factory.mktemp("samples")
    lines = ([json.dumps(header)] if header else []) + [json.dumps(r, allow_nan=True) for r in rows]
    if junk is not None:
        lines.append(junk)
    path = d / f"s{suffix}"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _count("eval samples files")
    assert_clear(*run_cli(["eval", "--metric", "diversity", "--samples", str(path), "--out", str(d / "e.json")]),
                 f"samples {lines!r}")


# ----------------------------------------------------------------------- CLI numbers

@FUZZ
@given(flag=st.sampled_from(["--bootstrap", "--batch-size", "--max-samples"]), value=NUMBER_TEXT)
def test_fuzz_eval_number_flags(tmp_path_factory, flag, value):
    d = tmp_path_factory.mktemp("evalnum")
    path = d / "s.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in ("a b c", "b c d", "c d e")))
    _count("CLI numbers")
    assert_clear(*run_cli(["eval", "--metric", "diversity", "--samples", str(path), "--out", str(d / "e.json"),
                           f"{flag}={value}"]), f"{flag}={value!r}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_encoder_dir, tiny_corpus):
    run = tmp_path_factory.mktemp("fuzzrun") / "run"
    recipe = run.parent / "tiny.yaml"
    recipe.write_text(f"encoder:\n  source: {tiny_encoder_dir}\n  latent_std: 1.0\ndata:\n"
                      f"  dataset: {tiny_corpus / 'text.jsonl'}\n  max_length: 8\nmodel:\n  preset: elf-tiny\n"
                      f"  depth: 1\n  hidden_size: 16\n  num_heads: 2\noptim:\n  optimizer: adamw\n  lr: 0.003\n"
                      f"train:\n  steps: 2\n  batch_size: 4\n  save_every: 2\n  log_every: 1\n  run_dir: {run}\n"
                      f"sample:\n  steps: 2\n  num_samples: 1\n  batch_size: 1\n")
    code, err = run_cli(["train", str(recipe)])
    assert code == 0, err
    return run


SAMPLE_FLAGS = {"--cfg": NUMBER_TEXT, "--gamma": NUMBER_TEXT, "--sc-cfg": NUMBER_TEXT,
                "--steps": NUMBER_TEXT.filter(lambda v: not v.strip().isdigit() or int(v) <= 4),
                "--num-samples": NUMBER_TEXT.filter(lambda v: not v.strip().isdigit() or int(v) <= 2),
                "--seed": NUMBER_TEXT}


@FUZZ
@given(data=st.data())
def test_fuzz_sample_number_flags(tiny_run, tmp_path_factory, data):
    flag = data.draw(st.sampled_from(sorted(SAMPLE_FLAGS)))
    value = data.draw(SAMPLE_FLAGS[flag])
    if flag in ("--steps", "--num-samples"):
        try:  # keep accepted cases cheap: a big valid count is not malformed input
            if float(value) > 4:
                return
        except (ValueError, OverflowError):
            pass
    out = tmp_path_factory.mktemp("fuzzsample") / "s.jsonl"
    _count("CLI numbers")
    code, err = run_cli(["sample", "--run", str(tiny_run), "--out", str(out), "--steps", "2", "--num-samples", "1",
                         f"{flag}={value}"])
    assert_clear(code, err, f"sample {flag}={value!r}")
    if code == 0 and out.is_file():
        header = json.loads(out.read_text().splitlines()[0])
        numbers = [v for v in _leaves(header) if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers), header  # a non-finite setting never reaches a header


def _leaves(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


def test_zz_report_counts(capsys):
    with capsys.disabled():
        print(f"\nfuzz cases run: {sum(COUNTS.values())} {COUNTS}")
