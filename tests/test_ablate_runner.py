"""`elfctl ablate` end to end on a tiny model: steps called in-process, a finished matching run reused instead of
retrained (issue 19 item 8), failures shown with their own message."""

import json
from pathlib import Path

import pytest

from elfctl.ablate.runner import PIPELINE, run_ablation
from elfctl.ablate.spec import load_spec
from elfctl.cli import main
from elfctl.config import load_config, load_resolved
from elfctl.errors import ConfigError


def _spec(tmp_path, recipe, metrics="[diversity]", variants=None):
    variants = variants or ("  - {name: steps-2, sample: [sample.steps=2]}\n"
                            "  - {name: steps-3, sample: [sample.steps=3]}\n")
    p = tmp_path / "tiny_ablation.yaml"
    p.write_text(f"description: tiny\nfinding: none\nscales: {{quick: {{recipe: {recipe}}}}}\n"
                 f"plot_x: sample.steps\nmetrics: {metrics}\nvariants:\n{variants}")
    return load_spec(str(p))


def _train(recipe, *overrides):
    from elfctl.train.trainer import Trainer

    return Trainer(load_config(recipe, list(overrides)), log=lambda s: None).run()


def test_steps_run_in_process_and_a_finished_matching_run_is_reused(tmp_path, tiny_recipe, monkeypatch):
    recipe = tiny_recipe()
    _train(recipe)                                  # the recipe's own run: <tmp>/run, finished at step 3
    trained = []
    import elfctl.train.trainer as trainer

    real_run = trainer.Trainer.run
    monkeypatch.setattr(trainer.Trainer, "run", lambda self: trained.append(self.run_dir) or real_run(self))
    logs = []
    out = tmp_path / "ablate"
    summary = run_ablation(_spec(tmp_path, recipe), "quick", out, log=logs.append, reuse_roots=[])
    assert trained == []                            # nothing retrained
    reuse_lines = [s for s in logs if "reusing the finished run" in s]
    assert len(reuse_lines) == 2 and str(tmp_path / "run") in reuse_lines[0] and "step 3" in reuse_lines[0]
    rows = summary["rows"]
    assert [r["variant"] for r in rows] == ["steps-2", "steps-3"] and [r["x"] for r in rows] == [2, 3]
    assert all(r["run_dir"] == str(tmp_path / "run") and r["reused_run"] == str(tmp_path / "run") for r in rows)
    assert not (out / "tiny-ablation-quick" / "runs").exists()
    headers = [json.loads(open(r["samples"]).readline()) for r in rows]
    assert [h["sampler"]["steps"] for h in headers] == [2, 3]
    res = json.loads((out / "tiny-ablation-quick" / "results.json").read_text())
    assert res["rows"][0]["eval"] == rows[0]["eval"] and "diversity" in json.loads(open(rows[0]["eval"]).read())
    # a second run reuses samples and scores too: no new log line for sample or eval
    logs.clear()
    run_ablation(_spec(tmp_path, recipe), "quick", out, log=logs.append, reuse_roots=[])
    assert not any("] sample" in s or "] eval" in s for s in logs)


def test_a_different_training_config_is_trained_not_reused(tmp_path, tiny_recipe):
    recipe = tiny_recipe()
    _train(recipe, "optim.lr=0.001")                # same recipe, another learning rate: another model
    logs = []
    out = tmp_path / "ablate"
    spec = _spec(tmp_path, recipe)
    summary = run_ablation(spec, "quick", out, log=logs.append, reuse_roots=[])
    own = out / "tiny-ablation-quick" / "runs" / "base"
    assert not any("reusing" in s for s in logs)
    assert [r["run_dir"] for r in summary["rows"]] == [str(own)] * 2
    assert summary["rows"][0]["step"] == 3 and summary["rows"][0]["reused_run"] is None
    # the second variant used the run the first one trained; the run's config is the recipe's, not the first
    # variant's sample settings (so an interrupted run resumes under any variant of the ablation)
    assert sum("] train " in s for s in logs) == 1 and any(f"{own} is finished (step 3)" in s for s in logs)
    assert load_resolved(own / "config.yaml").sample.steps == load_config(recipe).sample.steps == 3


def test_a_failing_step_shows_its_own_message(tmp_path, tiny_recipe, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # the CLI also looks under ./runs for runs to reuse
    recipe = tiny_recipe()
    _train(recipe)
    spec = _spec(tmp_path, recipe, metrics="[bleu]", variants="  - {name: v, sample: [sample.steps=2]}\n")
    with pytest.raises(ConfigError) as e:
        run_ablation(spec, "quick", tmp_path / "ablate", log=lambda s: None, reuse_roots=[])
    msg = str(e.value)
    assert msg.startswith("ablation tiny-ablation (quick), variant 'v', eval step: ")
    assert "no 'reference' fields" in msg            # the eval's own message, not "exit 2: elfctl eval ..."
    assert main(["ablate", str(spec.path), "--out", str(tmp_path / "ablate")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ablation tiny-ablation (quick), variant 'v', eval step:")


def test_the_pipeline_is_named_steps():
    names = [name for name, _ in PIPELINE]
    assert len(set(names)) == len(names) and all(callable(fn) for _, fn in PIPELINE)
    assert names.index("train") < names.index("sample") < names.index("eval")


def test_a_run_saved_without_a_key_of_today_is_not_a_match(tmp_path, tiny_recipe):
    from elfctl.ablate.reuse import finished_run
    from elfctl.rundir import checkpoint as ckpt

    recipe = tiny_recipe()
    cfg = load_config(recipe)
    run = _train(recipe).run_dir
    assert finished_run(run, cfg) is not None
    assert finished_run(run, load_config(recipe, ["train.steps=4"])) is None     # not finished for 4 steps
    saved = ckpt.latest_checkpoint(run) / "config.yaml"
    text = saved.read_text()
    assert "  bottleneck_dim: " in text
    # as if written by an elfctl that had no model.bottleneck_dim: re-read, it would get today's default
    saved.write_text("".join(line + "\n" for line in text.splitlines() if "bottleneck_dim" not in line))
    assert load_resolved(saved).model.bottleneck_dim == cfg.model.bottleneck_dim
    assert finished_run(run, cfg) is None


def test_the_summary_table_shows_each_score_with_its_interval():
    from elfctl.commands.ablate import with_interval
    from elfctl.eval.report import headline

    results = {"judge": "j", "rows": {"model": {"genppl": 418.833, "genppl_ci95": [388.71, 452.94],
                                                "entropy": 2.5391, "entropy_ci95": [2.5126, 2.5654]}}}
    row = headline(results)
    assert with_interval(row["genppl"], row["genppl_ci95"], 1) == "418.8 [388.7, 452.9]"
    assert with_interval(row["entropy"], row["entropy_ci95"], 3) == "2.539 [2.513, 2.565]"
    assert with_interval(7.0, None, 1) == "7.0" and with_interval(None, None, 1) == "-"  # no bootstrap, no score


def test_the_table_and_results_carry_the_metrics_asked_for(tmp_path, tiny_recipe, capsys, monkeypatch):
    """metrics: [diversity] -> diversity columns and numbers, no empty Gen PPL column or judge line."""
    monkeypatch.setenv("COLUMNS", "250")            # rich wraps a wide table to the terminal
    monkeypatch.chdir(tmp_path)
    recipe = tiny_recipe()
    _train(recipe)
    spec = _spec(tmp_path, recipe, variants="  - {name: v, sample: [sample.steps=2]}\n")
    capsys.readouterr()
    assert main(["ablate", str(spec.path), "--out", str(tmp_path / "ablate")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "variant" in line)
    assert "distinct_1" in header and "repetition_4gram" in header and "Gen PPL" not in header, out
    assert "judge" not in out
    res = json.loads((tmp_path / "ablate" / "tiny-ablation-quick" / "results.json").read_text())
    assert res["metrics"] == ["diversity"]
    row = res["rows"][0]
    scored = json.loads(open(row["eval"]).read())["diversity"]
    assert row["distinct_1"] == scored["distinct_1"] and row["repetition_4gram"] == scored["repetition_4gram"]
    assert 0 < row["distinct_1"] <= 1
    value_line = next(line for line in out.splitlines() if line.strip("│ ").startswith("v "))
    assert f"{row['distinct_1']:.3f}" in value_line


def test_results_json_is_written_beside_the_plots_with_distill_variants_and_when_a_plot_fails(tmp_path, tiny_recipe,
                                                                                          monkeypatch):
    """docs/results/distill-steps/ has plots but no results.json: the runner writes it for distill variants too,
    and writes it even when plotting fails (the scores never depend on the plots)."""
    recipe = tiny_recipe()
    _train(recipe)
    pd = tmp_path / "tiny_pd.yaml"
    pd.write_text(f"extends: {recipe}\ndistill: {{rounds: [2, 1], teacher_steps: 2, round_steps: 1, samplers: "
                  f"{{1: {{sc_cfg: 2.5}}, 2: {{sc_cfg: 2.5}}}}}}\ntrain: {{save_every: 1}}\n")
    spec_path = tmp_path / "pd_ablation.yaml"
    spec_path.write_text(f"scales: {{quick: {{recipe: {recipe}, distill: {pd}}}}}\nplot_x: sample.steps\n"
                         f"metrics: [diversity]\nvariants:\n  - {{name: teacher-2, sample: [sample.steps=2]}}\n"
                         f"  - {{name: student-2, distill: true, sample: [sample.steps=2]}}\n")
    out = tmp_path / "ablate"
    summary = run_ablation(load_spec(str(spec_path)), "quick", out, log=lambda s: None, reuse_roots=[])
    root = out / "pd-ablation-quick"
    res = json.loads((root / "results.json").read_text())
    assert [r["series"] for r in res["rows"]] == ["teacher", "student"] and res["rows"] == summary["rows"]
    assert res["rows"][1]["run_dir"].endswith("round2-1step") and "distinct_1" in res["rows"][1]
    assert all(Path(p).parent == root for p in res["plots"]) and res["plots"]  # the plots beside it

    import elfctl.ablate.plots as plots

    def broken(summary, root):
        raise RuntimeError("matplotlib backend failed")

    monkeypatch.setattr(plots, "write_plots", broken)
    (root / "results.json").unlink()
    with pytest.raises(RuntimeError, match="backend failed"):
        run_ablation(load_spec(str(spec_path)), "quick", out, log=lambda s: None, reuse_roots=[])
    assert json.loads((root / "results.json").read_text())["rows"] == res["rows"]


def test_a_run_that_differs_only_in_how_it_ran_trains_the_same_model():
    # the trainer's RUNTIME_KEYS (what a resume may change) never make an ablation retrain a finished model
    from elfctl.ablate.reuse import training_differences
    from elfctl.config import load_config as load

    base = load(None, []).to_dict()
    ran_elsewhere = load(None, ["train.micro_batch_size=8", "train.dist_timeout_min=30",
                                "train.fsdp=true", "model.gradient_checkpointing=true"]).to_dict()
    assert training_differences(base, ran_elsewhere) == []
    assert training_differences(base, load(None, ["optim.lr=0.5"]).to_dict()) == ["optim.lr"]
    assert training_differences(base, load(None, ["train.grad_accum=2"]).to_dict()) == []
