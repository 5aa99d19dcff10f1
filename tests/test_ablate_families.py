"""`elfctl ablate` across model families (elf-vs-mdlm's machinery) on tiny models: seeds, the data and
random-token baselines scored once, costs per row, the likelihood bound where a family has one."""

import json

from elfctl.ablate.runner import run_ablation
from elfctl.ablate.spec import load_spec


def test_two_families_seeds_baselines_and_costs(tmp_path, tiny_recipe, judge_dir):
    recipe = tiny_recipe(f"eval:\n  judge: {judge_dir}\n  bootstrap: 0\n")
    spec = tmp_path / "fam.yaml"
    spec.write_text(
        f"description: tiny\nfinding: none\nscales: {{quick: {{recipe: {recipe}, seeds: [0, 1]}}}}\n"
        "plot_x: sample.steps\nmetrics: [genppl, nelbo]\nseeds: [5]\nbaselines: true\nvariants:\n"
        "  - {name: elf-2, series: elf, sample: [sample.steps=2]}\n"
        "  - {name: mdlm-2, series: mdlm, train: [model.family=mdlm, sample.sampler=ddpm_cache], "
        "sample: [sample.steps=2]}\n"
        "  - {name: mdlm-4, series: mdlm, train: [model.family=mdlm, sample.sampler=ddpm_cache], "
        "sample: [sample.steps=4]}\n")
    logs = []
    summary = run_ablation(load_spec(str(spec)), "quick", tmp_path / "ablate", log=logs.append, reuse_roots=[])
    elf, m2, m4 = summary["rows"]
    assert [r["series"] for r in summary["rows"]] == ["elf", "mdlm", "mdlm"]
    assert summary["seeds"] == [0, 1]                       # the scale's seeds replace the spec's [5]
    assert (elf["family"], m2["family"]) == ("elf", "mdlm") and m2["run_dir"] == m4["run_dir"] != elf["run_dir"]
    for r in summary["rows"]:
        files = r["sample_files"]
        assert len(files) == 2 and [json.loads(open(f).readline())["seed"] for f in files] == [0, 1]
        assert r["genppl"] > 0 and r["genppl_std"] is not None and r["entropy_std"] is not None
        assert r["nfe"] >= 1 and r["seconds_per_sample"] > 0 and r["params"] > 0 and r["train_flops_per_step"] > 0
    assert elf["nfe"] == 2 + 1                                      # ELF: steps + the decode pass
    assert m2["nfe"] <= 2 + 1 and m4["nfe"] <= 4 + 1
    assert elf.get("val_nelbo_ppl") is None and m2["val_nelbo_ppl"] > 1 and m2["val_nelbo_ppl"] == m4["val_nelbo_ppl"]
    # the held-out data and random tokens: scored once, with the first variant
    assert set(summary["baselines"]) == {"data", "random"} and summary["baselines"]["random"]["genppl"] > 0
    assert sum("] eval" in s for s in logs) == 3
    assert any(p.endswith("frontier.png") for p in summary["plots"])
