"""Model families: the registry and its one-line errors, ELF as a family (the same network, loss and sampler as
before), and a third family defined here that trains, samples and is scored through the unchanged commands."""

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from elfctl.config import load_config
from elfctl.errors import ConfigError
from elfctl.family import FamilyEntry, family_entry, load_family, register_family, unregister_family
from elfctl.objective import LossOutput


def test_unknown_family_and_foreign_sampler_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"^model.family: 'mdml' is not valid \(did you mean 'mdlm'\?\); choose "
                                          r"one of elf, mdlm"):
        load_config(None, ["model.family=mdml"])
    with pytest.raises(ConfigError, match=r"^sample.sampler: 'ode' is not a sampler of model.family mdlm; choose "
                                          r"one of ddpm_cache, ddpm$"):
        load_config(None, ["model.family=mdlm", "sample.sampler=ode"])
    with pytest.raises(ConfigError, match=r"^data.task: conditional is not supported by model.family mdlm"):
        load_config(None, ["model.family=mdlm", "sample.sampler=ddpm", "data.task=conditional"])
    assert load_config(None).model.family == "elf"                   # the default: ELF, as before


def test_elf_family_is_the_same_network_objective_and_sampler():
    from elfctl.model import build_model
    from elfctl.objective import ElfObjective
    from elfctl.sampling.loading import Loaded
    from elfctl.sampling.sampler import EulerSampler

    cfg = load_config(None, ["model.depth=1", "model.hidden_size=32", "model.num_heads=2", "data.max_length=6"])
    elf = load_family("elf")
    torch.manual_seed(0)
    a = elf.build_network(cfg, latent_dim=8, vocab_size=23)
    torch.manual_seed(0)
    b = build_model(cfg.model, 8, 23)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    x = torch.randn(4, 6, 8)
    ids = torch.randint(0, 23, (4, 6))
    am, cm = torch.ones(4, 6, dtype=torch.bool), torch.zeros(4, 6, dtype=torch.bool)
    ours, theirs = elf.objective(cfg, None, None), ElfObjective.from_config(cfg)
    torch.manual_seed(1)
    draws = theirs.draw(x)
    la = ours(a, x, ids, am, cm, draws=draws).loss
    lb = theirs(b, x, ids, am, cm, draws=draws).loss
    assert torch.equal(la, lb)

    sampler = elf.sampler(Loaded(a, cfg, {}, None), cfg.sample, a)
    assert isinstance(sampler, EulerSampler) and sampler.s.gamma == cfg.sample.gamma
    # the ELF header's sampler record keeps exactly its keys (no mdlm-only setting)
    assert set(elf.sampler_record(cfg.sample)) == {"steps", "sampler", "gamma", "time_grid", "cfg", "sc_cfg"}


# ------------------------------------------------------------------------------------------------ a third family
class UnigramNet(nn.Module):
    """Every position: the same learned distribution over the vocabulary."""

    latent_dim = None

    def __init__(self, vocab_size: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(vocab_size))


class UnigramObjective:
    def __call__(self, model, x, input_ids, attention_mask, cond_mask, *, drop_cond=None, helper_model=None):
        assert x is None                                             # a token family gets no latents
        a = attention_mask.bool()
        logits = model.logits.expand(*input_ids.shape, -1)
        ce = F.cross_entropy(logits[a], input_ids[a])
        return LossOutput(loss=ce, l2=torch.zeros(()), ce=ce.detach(), n_positions=a.sum().float())


class UnigramResult:
    def __init__(self, ids):
        self.token_ids, self.nfe, self.rows, self.trajectory, self.trajectory_passes = ids, 1, ids.shape[0], [], 0


class UnigramSampler:
    def __init__(self, model):
        self.model = model

    def sample(self, n, length, latent_dim=None, *, seed, device, cond=None, trajectory_steps=()):
        g = torch.Generator().manual_seed(seed)
        probs = torch.softmax(self.model.logits.detach().double(), -1)
        return UnigramResult(torch.multinomial(probs, n * length, replacement=True, generator=g).view(n, length))


class UnigramFamily:
    name = "unigram"

    def vocab_size(self, tok):
        return len(tok)

    def build_network(self, cfg, *, latent_dim, vocab_size):
        return UnigramNet(vocab_size)

    def objective(self, cfg, data, device):
        return UnigramObjective()

    def sampler(self, loaded, sample, model):
        return UnigramSampler(model)

    def sampler_record(self, sample):
        return {"steps": sample.steps, "sampler": sample.sampler}


@pytest.fixture
def unigram_family():
    register_family(FamilyEntry("unigram", UnigramFamily, samplers=("draw",), data="tokens",
                                tasks=("unconditional",)))
    yield
    unregister_family("unigram")


def test_a_new_family_plugs_in_without_touching_train_sampling_or_commands(unigram_family, tiny_recipe, tmp_path,
                                                                          capsys):
    from elfctl.cli import main

    assert family_entry("unigram").data == "tokens"
    recipe = tiny_recipe("model:\n  family: unigram\nsample:\n  sampler: draw\n  steps: 1\n  num_samples: 4\n"
                         "  batch_size: 2\noptim:\n  optimizer: adamw\n  lr: 0.5\n")
    assert main(["train", recipe]) == 0
    run = tmp_path / "run"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["loss"] < metrics[0]["loss"]                  # the unigram learned something
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--run", str(run), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["family"] == "unigram" and lines[0]["sampler"] == {"steps": 1, "sampler": "draw"}
    assert len(lines) == 5 and all(isinstance(r["text"], str) for r in lines[1:])
    assert main(["eval", str(out), "--metric", "diversity", "--out", str(tmp_path / "e.json")]) == 0
    assert main(["sample", "--run", str(run), "--sampler", "ddpm"]) == 2  # another family's sampler
    capsys.readouterr()
    # infilling pins encoder latents, which a token family has none of; nor has this family a likelihood bound
    assert main(["sample", "--run", str(run), "--prefix", "the cat"]) == 2
    assert "a model.family unigram model has none" in capsys.readouterr().err
    assert main(["eval", str(out), "--metric", "nelbo"]) == 2
    assert "model.family unigram has no likelihood bound" in capsys.readouterr().err
