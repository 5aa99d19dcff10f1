"""`elfctl import` / `elfctl export` of the authors' released checkpoints (elfctl/authors/), offline and tiny.

Every authors' file here is written independently of elfctl's converter: their key names straight from
AUTHORS_KEY_MAP, their decode kernels transposed to (in, out) by hand, `_orig_mod.` prefixes, extra entries
(opt_state, lr_scheduler, dropout_rng, grad_accum_buffers) and no file suffix, as their `save_checkpoint` does.
"""

import hashlib
import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from elfctl.cli import main
from elfctl.errors import ConfigError
from elfctl.model import AUTHORS_KEY_MAP, ELF, PRESETS

THEIR_IN_OUT = {"decode_proj.weight", "unembed.weight"}  # stored (in, out) in their files


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("ELFCTL_CACHE", str(tmp_path / "cache"))


def their_state(model: torch.nn.Module, prefix: str = "_orig_mod.") -> dict:
    out = {}
    for k, v in model.state_dict().items():
        out[prefix + AUTHORS_KEY_MAP.get(k, k)] = (v.t() if k in THEIR_IN_OUT else v).clone()
    return out


def tiny_models(vocab: int, latent: int = 16, seed: int = 0) -> tuple[ELF, ELF]:
    """Raw and EMA networks of a shape no preset has, with non-default prefix-token counts."""
    torch.manual_seed(seed)
    kw = dict(depth=2, hidden_size=32, num_heads=4, bottleneck_dim=8, num_time_tokens=3, num_sc_cfg_tokens=2,
              num_mode_tokens=5)
    raw, ema = ELF(latent, vocab, **kw), ELF(latent, vocab, **kw)
    with torch.no_grad():  # non-zero heads (ELF zero-inits the flow head) so every weight matters
        for p in list(raw.parameters()) + list(ema.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    return raw, ema


def write_authors_file(folder, raw: ELF, ema: ELF, step: int = 7, epoch: int = 2):
    opt = torch.optim.AdamW(raw.parameters(), lr=1e-3)
    raw(torch.randn(1, 3, raw.latent_dim), torch.rand(1))[0].sum().backward()
    opt.step()
    opt.zero_grad()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    payload = {"params": their_state(raw), "ema_params1": their_state(ema), "opt_state": opt.state_dict(),
               "lr_scheduler": sched.state_dict(), "step": step, "epoch": epoch,
               "dropout_rng": torch.Generator().manual_seed(0).get_state(), "grad_accum_buffers": {}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint_{step}"
    torch.save(payload, path)
    return path


@pytest.fixture
def vocab(tiny_encoder_dir):
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(tiny_encoder_dir)))


def text_overrides(tiny_encoder_dir, tiny_corpus):
    return [f"encoder.source={tiny_encoder_dir}", f"encoder.tokenizer={tiny_encoder_dir}", "encoder.latent_std=1.0",
            f"data.dataset={tiny_corpus / 'text.jsonl'}", "data.max_length=12", "data.packing=false",
            "sample.num_samples=3", "sample.batch_size=3"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------------------------- import

def test_authors_file_imports_samples_and_evaluates(tmp_path, tiny_encoder_dir, tiny_corpus, vocab, capsys):
    raw, ema = tiny_models(vocab)
    src = write_authors_file(tmp_path / "download", raw, ema, step=7, epoch=2)
    run = tmp_path / "run"
    assert main(["import", str(src), "--out", str(run), *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0
    assert f"-> {run}" in capsys.readouterr().out

    prov = json.loads((run / "provenance.json").read_text())
    assert prov["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (prov["step"], prov["epoch"], prov["recipe"]) == (7, 2, "owt")
    assert "opt_state" in prov["entries"]
    step_dir = run / "checkpoints" / "step_00000007"
    ema_t, raw_t = load_file(step_dir / "ema.safetensors"), load_file(step_dir / "model.safetensors")
    for ours, theirs in ((ema_t, ema), (raw_t, raw)):
        assert set(ours) == set(theirs.state_dict())
        for k, v in theirs.state_dict().items():
            assert torch.equal(ours[k], v), k

    from elfctl.config import load_resolved

    cfg = load_resolved(run / "config.yaml")
    assert (cfg.model.depth, cfg.model.hidden_size, cfg.model.num_heads, cfg.model.bottleneck_dim) == (2, 32, 4, 8)
    assert (cfg.model.num_time_tokens, cfg.model.num_sc_cfg_tokens, cfg.model.num_mode_tokens) == (3, 2, 5)
    # the authors' ELF-B OpenWebText setting is the run's default (SDE 32 steps, gamma 1.5, SC-CFG 3)
    assert (cfg.sample.sampler, cfg.sample.steps, cfg.sample.gamma, cfg.sample.sc_cfg) == ("sde", 32, 1.5, 3.0)
    assert cfg.sample.bf16  # bf16 autocast on CUDA, as the authors sample (fp32 on the CPU)

    # the loaded network computes what their EMA network computes (transposes and names right)
    from elfctl.sampling.loading import load_for_sampling

    loaded = load_for_sampling(run, ema=True, with_text=False)
    z, t = torch.randn(2, 5, 16), torch.rand(2)
    with torch.no_grad():
        got, logits = loaded.model(z, t, decode=True)
        want, want_logits = ema.eval()(z, t, decode=True)
    assert torch.allclose(got, want, atol=1e-6) and torch.allclose(logits, want_logits, atol=1e-5)

    out = tmp_path / "s.jsonl"
    assert main(["sample", "--run", str(run), "--steps", "2", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["type"] == "header" and len(rows) == 4
    assert all(isinstance(r["text"], str) and r["token_ids"] for r in rows[1:])
    assert main(["eval", "--metric", "diversity", "--samples", str(out), "--out", str(tmp_path / "e.json")]) == 0
    assert "diversity" in json.loads((tmp_path / "e.json").read_text())


def test_import_then_train_continues_with_fresh_optimizer(tmp_path, tiny_encoder_dir, tiny_corpus, vocab, capsys):
    raw, ema = tiny_models(vocab)
    src = write_authors_file(tmp_path / "dl", raw, ema, step=7)
    run = tmp_path / "run"
    # the fine-tuning settings are chosen at import (a run's saved config is what training resumes under)
    fine_tune = ["data.pretokenized=null", "train.epochs=null", "train.steps=8", "train.batch_size=4",
                 "train.save_every=1", "optim.optimizer=adamw", "optim.warmup_epochs=null", "optim.warmup_steps=0",
                 "train.device=cpu"]
    assert main(["import", str(src), "--out", str(run), *text_overrides(tiny_encoder_dir, tiny_corpus),
                 *fine_tune]) == 0
    code = main(["train", str(run / "config.yaml")])
    assert code == 0, capsys.readouterr().err
    assert "holds weights only (imported)" in capsys.readouterr().out
    assert (run / "checkpoints" / "step_00000008" / "meta.json").is_file()


def test_folder_takes_highest_step_and_reimport_only_refreshes_config(tmp_path, tiny_encoder_dir, tiny_corpus, vocab):
    folder = tmp_path / "dl"
    write_authors_file(folder, *tiny_models(vocab, seed=1), step=3)
    write_authors_file(folder, *tiny_models(vocab, seed=2), step=12)
    run = tmp_path / "run"
    over = text_overrides(tiny_encoder_dir, tiny_corpus)
    assert main(["import", str(folder), "--out", str(run), *over]) == 0
    assert json.loads((run / "provenance.json").read_text())["step"] == 12
    before = (run / "checkpoints" / "step_00000012" / "ema.safetensors").stat().st_mtime_ns
    assert main(["import", str(folder), "--out", str(run), *over, "sample.steps=5"]) == 0
    from elfctl.config import load_resolved

    assert load_resolved(run / "checkpoints" / "step_00000012" / "config.yaml").sample.steps == 5
    assert (run / "checkpoints" / "step_00000012" / "ema.safetensors").stat().st_mtime_ns == before


def test_file_without_ema_uses_its_params_under_ddp_and_compile_prefixes(tmp_path, tiny_encoder_dir, tiny_corpus,
                                                                          vocab, capsys):
    raw, _ = tiny_models(vocab)
    src = tmp_path / "checkpoint_2"
    torch.save({"params": their_state(raw, prefix="module._orig_mod."), "step": 2, "epoch": 0}, src)
    run = tmp_path / "run"
    assert main(["import", str(src), "--out", str(run), *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0
    assert "no ema_params1" in capsys.readouterr().err
    ema_t = load_file(run / "checkpoints" / "step_00000002" / "ema.safetensors")
    assert all(torch.equal(ema_t[k], v) for k, v in raw.state_dict().items())


def test_sample_checkpoint_imports_once_into_the_cache(tmp_path, monkeypatch):
    """`--checkpoint checkpoint_<step>` with t5-small's widths (latent 512, vocabulary 32,100): no flags needed."""
    from elfctl.authors import importer
    from elfctl.sampling.loading import load_for_sampling

    torch.manual_seed(0)
    raw = ELF(512, 32100, depth=1, hidden_size=32, num_heads=2)
    src = write_authors_file(tmp_path / "dl", raw, raw, step=5)
    first = load_for_sampling(src, ema=None, with_text=False, log=lambda m: None)
    cached = list((tmp_path / "cache" / "imports").iterdir())
    assert len(cached) == 1 and first.checkpoint.parent.parent == cached[0]
    assert first.cfg.encoder.tokenizer == "builtin:t5-tokenizer"  # the hub is unreachable here

    def no_second_import(*a, **k):
        raise AssertionError("imported twice")

    monkeypatch.setattr(importer, "import_checkpoint", no_second_import)
    again = load_for_sampling(src, ema=None, with_text=False)
    assert again.checkpoint == first.checkpoint
    folder = load_for_sampling(src.parent, ema=None, with_text=False)  # the folder's newest file: the same import
    assert folder.checkpoint == first.checkpoint


# ----------------------------------------------------------------------------------------------- safety, errors

class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("form", ["torch.save", "pickle"])
def test_crafted_pickle_is_refused_and_executes_nothing(tmp_path, capsys, form):
    marker = tmp_path / "pwned"
    src = tmp_path / "dl" / "checkpoint_9"
    src.parent.mkdir()
    payload = {"params": {"x": _CreatesFile(marker)}, "step": 9}
    if form == "torch.save":
        torch.save(payload, src)
    else:
        src.write_bytes(pickle.dumps(payload, protocol=2))
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 2
    assert "refused" in one_line_error(capsys)
    assert main(["sample", "--checkpoint", str(src)]) == 2
    assert "refused" in one_line_error(capsys)
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_not_an_elf_file_names_the_first_bad_key(tmp_path, capsys, vocab):
    raw, ema = tiny_models(vocab)
    state = their_state(raw, prefix="")
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "final_layer.norm_final.weight"},
                    "missing key 'final_layer.norm_final.weight'"),
        "shape": ({**state, "blocks.1.attn.qkv.weight": torch.zeros(3, 32)},
                  "'blocks.1.attn.qkv.weight' has shape (3, 32), expected (96, 32)"),
        "extra": ({**state, "head.extra": torch.zeros(2)}, "unexpected key 'head.extra'"),
    }
    for name, (params, expected) in cases.items():
        path = tmp_path / name / "checkpoint_1"
        path.parent.mkdir()
        torch.save({"params": params, "step": 1}, path)
        assert main(["import", str(path), "--out", str(tmp_path / f"run-{name}")]) == 2
        err = one_line_error(capsys)
        assert expected in err, err
    torch.save({"model": state}, tmp_path / "checkpoint_2")
    assert main(["import", str(tmp_path / "checkpoint_2")]) == 2
    assert "missing key 'params'" in one_line_error(capsys)
    (tmp_path / "checkpoint_3").write_text("not a checkpoint")
    assert main(["import", str(tmp_path / "checkpoint_3")]) == 2
    assert "not a torch.save checkpoint" in one_line_error(capsys)


def test_hub_id_without_hub_says_how_to_use_a_local_file(capsys):
    repo = "embedded-language-flows/ELF-B-owt-torch"
    assert main(["import", repo]) == 2
    err = one_line_error(capsys)
    assert repo in err and "not reachable" in err and "elfctl import /path/to/checkpoint_<step>" in err
    assert main(["sample", "--checkpoint", repo]) == 2
    assert "elfctl import /path/to/checkpoint_<step>" in one_line_error(capsys)


def test_conditional_model_without_encoder_weights_says_what_is_missing(tmp_path, tiny_encoder_dir, tiny_corpus,
                                                                         vocab, capsys):
    src = write_authors_file(tmp_path / "dl", *tiny_models(vocab), step=4)
    run = tmp_path / "run"
    over = [f"encoder.source={tmp_path / 'absent' / 't5-small'}", f"encoder.tokenizer={tiny_encoder_dir}",
            "data.max_length=12", "data.max_input_length=6"]
    assert main(["import", str(src), "--out", str(run), "--recipe", "xsum", *over]) == 0
    from elfctl.config import load_resolved

    cfg = load_resolved(run / "config.yaml")
    assert (cfg.data.task, cfg.sample.sampler, cfg.sample.steps, cfg.sample.cfg, cfg.sample.sc_cfg) == \
        ("conditional", "ode", 64, 2.0, 1.0)
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", "the cat sat", "--steps", "2"]) == 2
    err = one_line_error(capsys)
    assert "encoder" in err and f"--out {run} encoder.source=" in err


def test_checkpoint_naming_a_weights_file_uses_that_file(tmp_path, tiny_encoder_dir, tiny_corpus, vocab):
    from elfctl.sampling.loading import load_for_sampling

    raw, ema = tiny_models(vocab)
    run = tmp_path / "run"
    assert main(["import", str(write_authors_file(tmp_path / "dl", raw, ema)), "--out", str(run),
                 *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0
    step_dir = run / "checkpoints" / "step_00000007"
    got = load_for_sampling(step_dir / "model.safetensors", ema=None, with_text=False)
    assert got.ema is False and torch.equal(got.model.unembed.weight, raw.unembed.weight)
    got = load_for_sampling(step_dir / "ema.safetensors", ema=None, with_text=False)
    assert got.ema is True and torch.equal(got.model.unembed.weight, ema.unembed.weight)
    with pytest.raises(ConfigError, match="--no-ema"):
        load_for_sampling(step_dir / "ema.safetensors", ema=False, with_text=False)
    with pytest.raises(ConfigError, match="not a weights file"):
        load_for_sampling(step_dir / "train_state.pt", ema=None, with_text=False)


# ----------------------------------------------------------------------------------------------- architecture

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_architecture_inferred_for_every_preset_on_meta(preset):
    from elfctl.authors.architecture import infer_architecture

    shape = PRESETS[preset]
    with torch.device("meta"):
        model = ELF(512, 32100, depth=shape.depth, hidden_size=shape.hidden_size, num_heads=shape.num_heads)
    arch = infer_architecture(their_state(model, prefix=""))
    assert arch.preset == preset
    assert (arch.depth, arch.hidden_size, arch.num_heads) == (shape.depth, shape.hidden_size, shape.num_heads)
    assert (arch.latent_dim, arch.vocab_size, arch.bottleneck_dim) == (512, 32100, 128)
    assert (arch.num_time_tokens, arch.num_sc_cfg_tokens, arch.num_mode_tokens) == (4, 4, 4)


def test_pd_student_imports_on_the_pd_recipe_with_its_few_step_setting(tmp_path, tiny_encoder_dir, tiny_corpus,
                                                                         vocab):
    from elfctl.config import load_resolved
    from elfctl.recipes import shipped_recipes

    src = write_authors_file(tmp_path / "ELF-B-PD-owt-torch", *tiny_models(vocab), step=3)
    run = tmp_path / "run"
    assert main(["import", str(src), "--out", str(run), *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0
    cfg = load_resolved(run / "config.yaml")
    assert json.loads((run / "provenance.json").read_text())["recipe"] == \
        ("owt-pd" if "owt-pd" in shipped_recipes() else "owt")
    assert (cfg.sample.sampler, cfg.sample.steps, cfg.sample.gamma, cfg.sample.sc_cfg) == ("sde", 8, 1.5, 2.5)


def test_imported_student_samples_each_step_count_with_its_table_row(tmp_path, tiny_encoder_dir, tiny_corpus,
                                                                      vocab):
    src = write_authors_file(tmp_path / "ELF-B-PD-owt-torch", *tiny_models(vocab), step=3)
    run = tmp_path / "run"
    assert main(["import", str(src), "--out", str(run), *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0

    def header(*flags):
        out = tmp_path / "s.jsonl"
        assert main(["sample", "--run", str(run), "--num-samples", "1", "--out", str(out), *flags]) == 0
        h = json.loads(out.read_text().splitlines()[0])
        return h["sampler"]["steps"], h["sampler"]["sampler"], h["sampler"]["gamma"], h["guidance"]["sc_cfg"]

    assert header("--steps", "16") == (16, "sde", 2.0, 2.0)   # the authors' 16- and 32-step row
    assert header("--steps", "2") == (2, "sde", 1.5, 2.5)     # 1-8 steps
    assert header() == (8, "sde", 1.5, 2.5)                    # no --steps: the run's own setting
    assert header("--steps", "16", "--gamma", "1.0") == (16, "sde", 1.0, 2.0)   # explicit flags win
    assert header("--steps", "16", "--sc-cfg", "3.0") == (16, "sde", 2.0, 3.0)
    # a teacher (not a student) keeps its own settings at any step count
    teacher = tmp_path / "teacher"
    src = write_authors_file(tmp_path / "download", *tiny_models(vocab), step=3)
    assert main(["import", str(src), "--out", str(teacher), *text_overrides(tiny_encoder_dir, tiny_corpus)]) == 0
    run = teacher
    assert header("--steps", "16") == (16, "sde", 1.5, 3.0)


def test_released_names_pick_their_recipes():
    from elfctl.authors.recipe import recipe_from_name

    assert recipe_from_name("embedded-language-flows/ELF-B-xsum-torch") == "xsum"
    assert recipe_from_name("embedded-language-flows/ELF-B-de-en-torch") == "wmt14-de-en"
    assert recipe_from_name("embedded-language-flows/ELF-B-PD-owt-torch") == "owt-pd"
    assert recipe_from_name("embedded-language-flows/ELF-B-owt-torch") is None  # then: by architecture
    assert recipe_from_name("/data/updated/checkpoint_100") is None
    from elfctl.authors.recipe import sampling_for

    pd = sampling_for("owt", "embedded-language-flows/ELF-B-PD-owt-torch")  # also when owt-pd is not shipped
    assert (pd["sampler"], pd["steps"], pd["gamma"], pd["sc_cfg"]) == ("sde", 8, 1.5, 2.5)
    assert sampling_for("owt-elf-l", "x")["steps"] == 64 and sampling_for("xsum", "x")["cfg"] == 2.0


# ----------------------------------------------------------------------------------------------- export

def test_export_then_import_gives_identical_tensors(tmp_path, tiny_encoder_dir, tiny_corpus, vocab, capsys):
    raw, ema = tiny_models(vocab)
    src = write_authors_file(tmp_path / "dl", raw, ema, step=7, epoch=2)
    run = tmp_path / "run"
    over = text_overrides(tiny_encoder_dir, tiny_corpus)
    assert main(["import", str(src), "--out", str(run), *over]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--format", "authors", "--out", str(tmp_path / "exp")]) == 0
    assert "for sampling and evaluation" in capsys.readouterr().err  # not for resuming their trainer
    exported = tmp_path / "exp" / "checkpoint_7"
    back = torch.load(exported, weights_only=True)
    original = torch.load(src, weights_only=True)
    assert {"params", "ema_params1", "opt_state", "step", "epoch"} <= set(back)
    assert (back["step"], back["epoch"]) == (7, 2)
    for key in ("params", "ema_params1"):
        want = {k[len("_orig_mod."):]: v for k, v in original[key].items()}
        assert set(back[key]) == set(want)
        for k, v in want.items():
            assert torch.equal(back[key][k], v), k
    assert back["params"]["proj_kernel"].shape == (32, 16)  # (in, out) again

    # their loader hands opt_state to a two-group optimizer (Muon for 2-D tensors, Adam for the rest)
    their = ELF(16, vocab, depth=2, hidden_size=32, num_heads=4, bottleneck_dim=8, num_time_tokens=3,
                num_sc_cfg_tokens=2, num_mode_tokens=5)
    params = list(their.parameters())
    opt = torch.optim.Adam([{"params": [p for p in params if p.dim() == 2]},
                            {"params": [p for p in params if p.dim() != 2]}])
    opt.load_state_dict(back["opt_state"])

    run2 = tmp_path / "run2"
    assert main(["import", str(exported), "--out", str(run2), *over]) == 0
    for name in ("ema", "model"):
        a = load_file(run / "checkpoints" / "step_00000007" / f"{name}.safetensors")
        b = load_file(run2 / "checkpoints" / "step_00000007" / f"{name}.safetensors")
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def sample_texts(path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines()[1:]]


def test_exported_run_imports_back_with_one_command_and_samples_the_same_texts(tmp_path, tiny_recipe, capsys):
    """A run on a non-t5 encoder (the tiny BERT: latent width 16, its own vocabulary): the export carries its
    config, so `elfctl import FILE` and `elfctl sample --checkpoint FILE` need no flags."""
    recipe = tiny_recipe()
    assert main(["train", recipe]) == 0
    run = tmp_path / "run"
    assert main(["sample", "--run", str(run), "--seed", "3", "--out", str(tmp_path / "orig.jsonl")]) == 0
    assert main(["export", str(run), "--format", "authors", "--out", str(tmp_path / "exp")]) == 0
    exported = tmp_path / "exp" / "checkpoint_3"
    payload = torch.load(exported, weights_only=True)  # still readable without unpickling code
    assert {"params", "ema_params1", "opt_state", "step", "epoch"} <= set(payload)
    assert payload["elfctl"]["format"] == 1 and "encoder:" in payload["elfctl"]["config"]

    capsys.readouterr()
    back = tmp_path / "back"
    assert main(["import", str(exported), "--out", str(back)]) == 0, capsys.readouterr().err
    from elfctl.config import load_resolved

    orig_cfg, cfg = load_resolved(run / "config.yaml"), load_resolved(back / "config.yaml")
    assert cfg.encoder == orig_cfg.encoder and cfg.sample == orig_cfg.sample and cfg.data == orig_cfg.data
    assert json.loads((back / "provenance.json").read_text())["recipe"] == orig_cfg.name
    assert main(["sample", "--run", str(back), "--seed", "3", "--out", str(tmp_path / "back.jsonl")]) == 0
    assert sample_texts(tmp_path / "back.jsonl") == sample_texts(tmp_path / "orig.jsonl")
    assert len(sample_texts(tmp_path / "orig.jsonl")) == 3

    assert main(["sample", "--checkpoint", str(exported), "--seed", "3", "--out", str(tmp_path / "ck.jsonl")]) == 0
    assert sample_texts(tmp_path / "ck.jsonl") == sample_texts(tmp_path / "orig.jsonl")

    # --recipe names a shipped recipe: its settings, on the encoder and tokenizer the weights were trained with
    assert main(["import", str(exported), "--out", str(tmp_path / "as-quickstart"), "--recipe", "quickstart"]) == 0
    cfg = load_resolved(tmp_path / "as-quickstart" / "config.yaml")
    assert cfg.name == "quickstart" and cfg.encoder == orig_cfg.encoder


def test_reimport_into_a_run_trained_from_the_import_is_refused_like_any_run(tmp_path, tiny_encoder_dir, tiny_corpus,
                                                                              vocab, capsys):
    """Same rule as an ordinary run: once trained, its saved config never changes (it was silently rewritten)."""
    src = write_authors_file(tmp_path / "dl", *tiny_models(vocab), step=7)
    run = tmp_path / "run"
    over = ["--recipe", "owt", *text_overrides(tiny_encoder_dir, tiny_corpus), "data.pretokenized=null",
            "train.epochs=null", "train.steps=8", "train.batch_size=4", "train.save_every=1", "optim.optimizer=adamw",
            "optim.warmup_epochs=null", "optim.warmup_steps=0", "train.device=cpu"]
    assert main(["import", str(src), "--out", str(run), *over]) == 0
    assert main(["train", str(run / "config.yaml")]) == 0
    saved = (run / "config.yaml").read_bytes()
    capsys.readouterr()
    assert main(["import", str(src), "--out", str(run), *over, "train.steps=12"]) == 2
    err = one_line_error(capsys)
    assert "was trained on from this import" in err and "train.steps: run has 8, now 12" in err
    assert "choose another --out" in err
    assert (run / "config.yaml").read_bytes() == saved
    assert main(["import", str(src), "--out", str(run), *over]) == 0  # the same settings: nothing changes
    assert (run / "config.yaml").read_bytes() == saved
    # any other non-empty folder (an ordinary run, a download) is refused too
    assert main(["import", str(src), "--out", str(run.parent / "dl"), *over]) == 2
    assert "already exists" in one_line_error(capsys)


def test_files_that_are_no_checkpoint_and_missing_paths_are_one_line_exit_2(tmp_path, capsys, vocab, monkeypatch):
    """A text file (was KeyError/IndexError, exit 1), 3 bytes, truncated files (message cut mid-sentence), and a
    path that does not exist (was looked up as a hub id)."""
    raw, ema = tiny_models(vocab)
    whole = write_authors_file(tmp_path / "dl", raw, ema, step=5).read_bytes()
    legacy = tmp_path / "legacy"
    torch.save({"params": their_state(raw), "step": 5}, legacy, _use_new_zipfile_serialization=False)
    cases = {
        "notes.txt": (b"every line of my notes\nsecond line\n", "its text is not a pickle"),
        "eh.txt": (b"eh\n", "its text is not a pickle"),                     # 'e': KeyError 101 before
        "checkpoint_3": (b"abc", "its text is not a pickle"),                 # IndexError before
        "checkpoint_6": (whole[: len(whole) // 2], "its zip archive is truncated or damaged"),
        "checkpoint_7": (legacy.read_bytes()[:-40], "the file ends early: it is truncated"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert main(["import", str(path), "--out", str(tmp_path / "never")]) == 2, name
        err = one_line_error(capsys)
        assert expected in err and str(path) in err and err.endswith("(nothing in it was executed)"), err
    assert not (tmp_path / "never").exists()

    monkeypatch.chdir(tmp_path)  # dl/ exists here: dl/checkpoint_99 is a path under it
    for missing in ("bad/missing.pt", str(tmp_path / "nowhere" / "checkpoint_4"), "dl/checkpoint_99"):
        assert main(["import", missing]) == 2
        err = one_line_error(capsys)
        assert f"file not found: {missing}" in err and "hub" not in err.split("give")[0], err


def test_a_bare_file_takes_the_tokenizer_of_the_encoder_it_is_told(tmp_path, tiny_encoder_dir, tiny_corpus, vocab,
                                                                   capsys):
    """A file without the export's entry (the authors', or an older export): encoder.source names another encoder,
    and its own tokenizer comes with it (the importer used to set t5-small's always: 'vocabulary 34 vs 32100');
    a recipe whose encoder is not t5-small keeps its own tokenizer too."""
    src = write_authors_file(tmp_path / "dl", *tiny_models(vocab), step=7)
    from elfctl.config import load_resolved

    assert main(["import", str(src), "--out", str(tmp_path / "a"), "--recipe", "owt",
                 f"encoder.source={tiny_encoder_dir}"]) == 0, capsys.readouterr().err
    assert load_resolved(tmp_path / "a" / "config.yaml").encoder.tokenizer is None  # the encoder's own
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(f"extends: quickstart\nencoder: {{source: {tiny_encoder_dir}}}\n")
    assert main(["import", str(src), "--out", str(tmp_path / "b"), "--recipe", str(recipe)]) == 0, \
        capsys.readouterr().err
    assert load_resolved(tmp_path / "b" / "config.yaml").encoder.source == str(tiny_encoder_dir)


def test_an_export_carrying_a_config_this_elfctl_cannot_load_says_so(tmp_path, vocab, capsys):
    raw, ema = tiny_models(vocab)
    src = write_authors_file(tmp_path / "dl", raw, ema, step=2)
    payload = torch.load(src, weights_only=True)
    payload["elfctl"] = {"format": 1, "config": "name: x\nmodel: {future_key: 1}\n", "elfctl_version": "9.0"}
    torch.save(payload, src)
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert "the run config this export carries does not load here" in err and "future_key" in err
    assert "--recipe NAME" in err
    payload["elfctl"] = {"format": 2, "config": "", "elfctl_version": "9.0"}
    torch.save(payload, src)
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 2
    assert "export format 2" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()
