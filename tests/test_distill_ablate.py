"""The distill-steps ablation: its spec, and the step that swaps a variant's run for its distilled student."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import SyntheticData  # noqa: E402

from elfctl.ablate.distill_step import distill_step  # noqa: E402
from elfctl.ablate.spec import Variant, load_spec  # noqa: E402
from elfctl.config import load_config  # noqa: E402
from elfctl.errors import ConfigError  # noqa: E402
from elfctl.train import distill as distill_mod  # noqa: E402
from elfctl.train.trainer import Trainer  # noqa: E402

NET = ["data.max_length=6", "model.depth=1", "model.hidden_size=16", "model.num_heads=2", "train.batch_size=4",
       "train.log_every=1"]


def test_builtin_spec_samples_teacher_and_student_at_one_to_32_steps():
    spec = load_spec("distill-steps")
    assert spec.scales["quick"]["distill"] == "quickstart-pd" and spec.scales["paper"]["distill"] == "owt-pd"
    steps = {(v.distill, v.sample_settings().get("steps")) for v in spec.variants}
    for n in (1, 2, 4, 8, 16, 32):
        assert (True, n) in steps and (False, n) in steps
    assert spec.plot_x == "sample.steps"


@pytest.mark.parametrize("body, words", [
    ("scales: {quick: {recipe: quickstart, distill: 3}}\nvariants: [{name: a}]", "distill: must be a distillation"),
    ("scales: {quick: {recipe: quickstart}}\nvariants: [{name: a, distill: maybe}]", "must be true or false"),
])
def test_bad_distill_keys_in_a_spec(tmp_path, body, words):
    path = tmp_path / "x.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=words):
        load_spec(str(path))


def test_distill_step_replaces_the_run_by_the_final_student_with_its_settings(tmp_path, monkeypatch):
    teacher = tmp_path / "teacher"
    Trainer(load_config(None, [*NET, "train.steps=2", f"train.run_dir={teacher}"]), data_source=SyntheticData,
            log=lambda s: None).run()
    recipe = tmp_path / "tiny_pd.yaml"
    recipe.write_text("distill: {rounds: [2, 1], teacher_steps: 2, round_steps: 1, samplers: "
                      "{1: {sc_cfg: 2.5}, 2: {sc_cfg: 2.5}, 4: {sc_cfg: 1.5, sampler: ode, gamma: 0.0}}}\n"
                      "train: {save_every: 1}\n")
    monkeypatch.setattr(distill_mod, "_shared_data_source", lambda cfg, log: SyntheticData)
    job = SimpleNamespace(spec=SimpleNamespace(scales={"quick": {"recipe": "x", "distill": str(recipe)}}),
                          scale="quick", overrides=NET, root=tmp_path / "abl", log=lambda s: None)
    v = SimpleNamespace(variant=Variant("student-4", [], ["sample.steps=4"], distill=True), run_dir=teacher,
                        cfg=load_config(None, [*NET, "sample.steps=4"]), step=2, reused=None, trained_cfg=None)
    distill_step(job, v)
    assert v.run_dir == tmp_path / "abl" / "runs" / "tiny-pd" / "round2-1step"  # another teacher: its own folder
    assert v.step == 1
    assert (v.cfg.sample.steps, v.cfg.sample.sc_cfg, v.cfg.sample.sampler) == (4, 1.5, "ode")  # the 4-step row
    # a variant that is not marked distill keeps its run
    other = SimpleNamespace(variant=Variant("teacher-4", [], ["sample.steps=4"]), run_dir=teacher)
    distill_step(job, other)
    assert other.run_dir == teacher
