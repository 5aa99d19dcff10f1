"""`elfctl view`: the page data (frames, change marks, time alignment), the GIF, the report pages, the CLI's
errors. Hand-made trajectory files only (tests/viewer_files.py); the browser test is test_view_browser.py."""

import base64
import json
import re
from pathlib import Path

import pytest

from elfctl.cli import main
from elfctl.errors import ConfigError
from elfctl.view import trajectories as tv
from viewer_files import EIGHT, FOUR, MASKED, frames_of, header, write_samples


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="elf-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


@pytest.fixture
def four_and_eight(tmp_path):
    a = write_samples(tmp_path / "ode4.jsonl", header(4, num=2),
                      [{"text": "the x cat d", "trajectory": frames_of(FOUR)},
                       {"text": "the cat sat", "trajectory": frames_of(MASKED)}])
    b = write_samples(tmp_path / "sde8.jsonl", header(8, sampler="sde", gamma=1.5, seed=3),
                      [{"text": "one two three four", "trajectory": frames_of(EIGHT)}])
    return a, b


# ---------------------------------------------------------------------------------------------- frames
def test_change_letters_are_computed_position_by_position():
    assert tv.frame_kinds(None, ["a", " b"]) == "nn"                       # a first frame: all new
    assert tv.frame_kinds(["a", " b", " c"], ["a", " x", " c", " d"]) == ".n.n"
    assert tv.frame_kinds(["a", " x"], ["a ", "x"]) == ".."                # only the spacing moved
    assert tv.frame_kinds(["a", " b", " c"], ["a", " b"]) == ".."          # shorter: nothing new
    assert tv.frame_kinds(["a", " b", " c"], ["z", " b", " c"], pinned=[[0, 1], [2, 3]]) == "p.p"
    assert tv.frame_kinds(["a", " b"], ["a", " [MASK]"]) == ".m"           # re-masked: shown as a mask


def test_frames_of_a_recording_in_step_order_with_progress():
    frames = tv.build_frames(list(reversed(frames_of(FOUR))), steps=4)
    assert [f.step for f in frames] == [0, 1, 2, 3]
    assert [f.progress for f in frames] == [0.25, 0.5, 0.75, 1.0]
    assert [f.kinds for f in frames] == ["nnn", ".n.n", "....", "n.n."]
    masked = tv.build_frames(frames_of(MASKED), steps=4)
    assert [f.kinds for f in masked] == ["mmm", "nmm", ".mn", ".n."]


def test_text_only_frames_are_split_into_words_that_join_back():
    text = "the  cat[MASK] sat\non [MASK] "
    pieces = tv.split_text(text)
    assert "".join(pieces) == text
    assert pieces == ["the", "  cat", "[MASK]", " sat", "\non", " [MASK]", " "]
    frames = tv.build_frames([{"step": 0, "text": "a b"}, {"step": 1, "text": "a c d"}], steps=2)
    assert [f.tokens for f in frames] == [["a", " b"], ["a", " c", " d"]] and frames[1].kinds == ".nn"


def test_different_step_counts_share_one_normalized_time_axis(four_and_eight):
    a, b = (tv.read_panel(p) for p in four_and_eight)
    axis = tv.timeline([a, b])
    assert axis == [k / 8 for k in range(1, 9)]
    # at each time a panel shows its latest frame at or before it; the 4-step draw has none before 1/4
    assert tv.frame_at(a.samples[0].frames, axis) == [-1, 0, 0, 1, 1, 2, 2, 3]
    assert tv.frame_at(b.samples[0].frames, axis) == [0, 1, 2, 3, 4, 5, 6, 7]
    # a list recording (steps 0 and 3 of 8) holds its frame until the next one
    sparse = tv.build_frames(frames_of([["x"], ["y"]], steps=[0, 3]), steps=8)
    assert [f.progress for f in sparse] == [0.125, 0.5]
    assert tv.frame_at(sparse, axis) == [0, 0, 0, 1, 1, 1, 1, 1]


def test_page_data_round_trips_every_frame(four_and_eight):
    panels = [tv.read_panel(p) for p in four_and_eight]
    data = tv.page_data(panels)
    assert data["timeline"] == [k / 8 for k in range(1, 9)]
    first = data["panels"][0]
    assert first["title"] == "ode4.jsonl" and first["steps"] == 4 and first["total"] == 2
    assert [s["index"] for s in first["samples"]] == [0, 1]
    for p, raw in zip(data["panels"], (([FOUR, MASKED]), [EIGHT])):
        for s, tokens in zip(p["samples"], raw):
            assert [[data["pieces"][i] for i in f["t"]] for f in s["frames"]] == tokens
    assert [f["k"] for f in first["samples"][0]["frames"]] == ["nnn", ".n.n", "....", "n.n."]
    assert first["samples"][0]["at"] == [-1, 0, 0, 1, 1, 2, 2, 3]
    assert len(data["pieces"]) == len(set(data["pieces"]))  # one table entry per distinct piece


def test_panel_caption_comes_from_the_header():
    h = header(8, sampler="sde", gamma=1.5, seed=3)
    assert tv.panel_settings(h) == [("model", "quickstart @ step 400"), ("steps", "8"), ("sampler", "sde"),
                                    ("γ", "1.5"), ("guidance", "SC-CFG 3"), ("seed", "3"),
                                    ("time grid", "logit_normal")]
    cond = dict(h, guidance={"cfg": 2.0, "sc_cfg": 1.0, "cfg_applies_to": "condition"})
    assert ("guidance", "CFG 2, SC-CFG 1") in tv.panel_settings(cond)
    # another family's header: its own sampler keys, no ELF assumptions
    mdlm = {"type": "header", "recipe": "mdlm-quick", "family": "mdlm", "seed": 0,
            "sampler": {"steps": 16, "sampler": "ancestral", "nucleus": 0.9}}
    assert tv.panel_settings(mdlm) == [("model", "mdlm mdlm-quick"), ("steps", "16"), ("sampler", "ancestral"),
                                       ("seed", "0"), ("nucleus", "0.9")]


def test_infill_pinned_spans_and_prompts_reach_the_page(tmp_path):
    frames = [{"step": 0, "text": "the big x on", "tokens": ["the", " big", " x", " on"], "pinned": [[0, 2], [3, 4]]},
              {"step": 1, "text": "the big cat on", "tokens": ["the", " big", " cat", " on"],
               "pinned": [[0, 2], [3, 4]]}]
    f = write_samples(tmp_path / "i.jsonl", header(2), [{"text": "the big cat on", "prefix": "the big",
                                                         "suffix": "on", "trajectory": frames}])
    panel = tv.read_panel(f)
    assert [fr.kinds for fr in panel.samples[0].frames] == ["ppnp", "ppnp"]
    c = write_samples(tmp_path / "c.jsonl", header(2), [{"text": "b", "input": "a prompt <b>", "trajectory":
                                                         frames_of([["x"], ["b"]])}])
    data = tv.page_data([tv.read_panel(c)])
    assert data["panels"][0]["samples"][0]["prompt"] == "a prompt <b>"


# ---------------------------------------------------------------------------------------------- big inputs
def test_a_chosen_sample_of_a_big_file_is_read_without_parsing_the_others(tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [json.dumps(header(2, num=1000))]
    for i in range(1000):
        if i == 997:
            lines.append(json.dumps({"type": "sample", "index": i, "text": "b", "token_ids": [],
                                     "trajectory": frames_of([["a"], ["b"]])}))
        else:  # the index comes first, then something no JSON parser accepts: parsing it would fail
            lines.append('{"type": "sample", "index": %d, "text": BROKEN' % i)
    path.write_text("\n".join(lines) + "\n")
    panel = tv.read_panel(path, chosen=[997])
    assert [s.index for s in panel.samples] == [997] and panel.total == 1000
    with pytest.raises(ConfigError, match="line 2 is not JSON"):
        tv.read_panel(path)  # the default (first samples) does parse them
    with pytest.raises(ConfigError, match="has no sample 1000 .*0..999"):
        tv.read_panel(path, chosen=[1000])


def test_default_selection_is_the_first_samples_with_a_trajectory(tmp_path):
    samples = [{"text": "x"} if i % 2 else {"text": "y", "trajectory": frames_of([["y"]])} for i in range(30)]
    panel = tv.read_panel(write_samples(tmp_path / "s.jsonl", header(1, num=30), samples))
    assert [s.index for s in panel.samples] == [0, 2, 4, 6, 8, 10, 12, 14]


# ---------------------------------------------------------------------------------------------- the CLI
def test_view_writes_a_self_contained_page_and_a_gif(four_and_eight, tmp_path, capsys):
    from PIL import Image

    a, b = four_and_eight
    out, gif = tmp_path / "out" / "view.html", tmp_path / "view.gif"
    assert main(["view", str(a), str(b), "--out", str(out), "--gif", str(gif)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out} (2 panels, 8 frames" in said and f"wrote {gif} (8 frames)" in said
    html = out.read_text()
    assert "http" not in html and "<link" not in html and "src=" not in html  # nothing fetched from anywhere
    assert "γ <b>1.5</b>" in html and "seed <b>3</b>" in html
    data = _page_data(html)
    assert len(data["panels"]) == 2 and len(data["timeline"]) == 8
    with Image.open(gif) as im:  # one GIF frame per time of the shared axis
        assert im.n_frames == 8
    # the default page name: beside the first file
    assert main(["view", str(a)]) == 0
    assert (tmp_path / "ode4.html").is_file()
    assert main(["view", str(a), "--sample", "1", "--gif", str(gif)]) == 0
    with Image.open(gif) as im:
        assert im.n_frames == 4
    assert [s["index"] for s in _page_data((tmp_path / "ode4.html").read_text())["panels"][0]["samples"]] == [1]


def test_text_in_a_sample_cannot_break_out_of_the_page(tmp_path):
    evil = ["</script><script>alert(1)</script>", " <b>&amp;"]
    f = write_samples(tmp_path / "e.jsonl", header(1), [{"text": "x", "trajectory": frames_of([evil])}])
    assert main(["view", str(f), "--out", str(tmp_path / "e.html")]) == 0
    html = (tmp_path / "e.html").read_text()
    assert "</script><script>alert" not in html and html.count("</script>") == 2  # the data block and the script
    assert [_page_data(html)["pieces"][i] for i in _page_data(html)["panels"][0]["samples"][0]["frames"][0]["t"]] \
        == evil


def test_gif_lines_wrap_inside_the_panel():
    pytest.importorskip("PIL")
    from PIL import ImageFont

    from elfctl.view import gif

    fonts = gif._Fonts(ImageFont)
    tokens = ["word"] + [" longer"] * 300 + [" " + "x" * 400]
    lines = gif.layout(tokens, "n" * len(tokens), fonts, 300)
    assert len(lines) > 10
    font = fonts.bold
    for runs in lines:
        for x, text, kind in runs:
            assert x + font.getlength(text) <= 300 + 1e-6
    assert "".join(t for runs in lines for _, t, _ in runs) == "".join(t.strip() for t in tokens)


def test_user_errors_exit_2_with_one_line(four_and_eight, tmp_path, capsys):
    a, _ = four_and_eight
    bare = write_samples(tmp_path / "bare.jsonl", header(4, num=2), [{"text": "x"}, {"text": "y"}])
    notjson = tmp_path / "n.jsonl"
    notjson.write_text("hello\n")
    cases = (([str(tmp_path / "missing.jsonl")], "no such file"),
             ([str(bare)], "no trajectories recorded (2 samples, none with a trajectory); record them with "
                           "`elfctl sample --trajectory all"),
             ([str(notjson)], "line 1 is not JSON"),
             ([str(a), "--sample", "x"], "--sample: expected sample indices"),
             ([str(a), "--sample", "5"], "has no sample 5"),
             ([str(a), "--out", str(tmp_path)], "is a directory"),
             ([str(a), str(tmp_path)], "give one run or ablation directory alone"),
             ([str(tmp_path / "ablation"), "--gif", "x.gif"], "--gif/--sample"),
             ([str(tmp_path)], "neither a run directory"))
    (tmp_path / "ablation").mkdir()
    for args, message in cases:
        capsys.readouterr()
        assert main(["view", *args]) == 2, args
        assert message in _err_line(capsys), args
    assert main(["view", str(a), "--sample", "0", "--out", str(bare)]) == 0  # --out may replace a file


# ---------------------------------------------------------------------------------------------- reports
PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_run_report_has_config_loss_curve_samples_and_scores(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "eval").mkdir()
    (run / "checkpoints" / "step_00000400").mkdir(parents=True)
    (run / "config.yaml").write_text("name: quickstart\nmodel:\n  preset: elf-tiny\n  hidden_size: 256\n"
                                     "train:\n  steps: 400\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s / 100, "ce": 1.0, "l2": 0.5})
                                               + "\n" for s in (20, 40, 60)) + '{"step": 80, "lo')
    samples = write_samples(run / "samples" / "ode-64-s0.jsonl", header(64, num=2),
                            [{"text": "first <sample>"}, {"text": "second sample"}])
    (run / "eval" / "ode-64-s0.genppl.json").write_text(json.dumps({
        "inputs": [str(samples)], "rows": {"model": {"genppl": 412.5, "genppl_ci95": [380.31, 450.0],
                                                      "entropy": 2.5, "entropy_ci95": [2.4, 2.6]}},
        "judge_label": "judge: SmolLM2-135M (offline)", "protocol_line": "protocol elf (hash 5334b2650881)"}))
    (run / "eval" / "other.genppl.json").write_text(json.dumps({"inputs": ["/elsewhere/x.jsonl"], "rows": {}}))
    assert main(["view", str(run)]) == 0
    assert f"wrote {run / 'report.html'} (the run {run})" in capsys.readouterr().out
    html = (run / "report.html").read_text()
    assert "first &lt;sample&gt;" in html and "second sample" in html
    assert "<polyline" in html and "training loss" in html  # the loss curve (the torn last line is left out)
    assert "412.5 [380.3, 450.0]" in html and "2.500 [2.400, 2.600]" in html
    assert "judge: SmolLM2-135M (offline)" in html and "protocol elf (hash 5334b2650881)" in html
    assert "other.genppl.json" not in html
    assert "step_00000400" in html and "elf-tiny" in html


def test_ablation_report_has_table_plots_and_samples_even_after_a_move(tmp_path, capsys):
    root = tmp_path / "steps-quick"
    (root / "samples").mkdir(parents=True)
    write_samples(root / "samples" / "steps-8-abc.jsonl", header(8, num=3),
                  [{"text": "eight one"}, {"text": "eight two"}, {"text": "eight three"}, ])
    (root / "frontier.png").write_bytes(PNG_1PX)
    rows = [{"variant": "steps-8", "train": [], "sample": ["sample.steps=8"], "step": 400, "train_loss": 2.72,
             "samples": "/gone/steps-quick/samples/steps-8-abc.jsonl", "genppl": 544.77,
             "genppl_ci95": [500.12, 590.0], "entropy": 2.571, "entropy_ci95": [2.5, 2.6],
             "judge": "builtin:smollm2-135m", "protocol_hash": "5334b2650881", "x": 8},
            {"variant": "steps-16", "train": [], "sample": ["sample.steps=16"], "step": 400, "train_loss": 2.72,
             "samples": "/gone/x.jsonl", "genppl": None, "x": 16}]
    (root / "results.json").write_text(json.dumps({"ablation": "steps", "scale": "quick", "recipe": "quickstart",
                                                   "description": "number of sampling steps", "finding": "saturates",
                                                   "plot_x": "sample.steps", "rows": rows,
                                                   "plots": ["/gone/steps-quick/frontier.png"]}))
    out = tmp_path / "abl.html"
    assert main(["view", str(root), "--out", str(out)]) == 0
    html = out.read_text()
    assert "ablation steps (quick)" in html and "saturates" in html
    assert "544.8 [500.1, 590.0]" in html and "2.571 [2.500, 2.600]" in html
    assert "data:image/png;base64," + base64.b64encode(PNG_1PX).decode() in html
    assert "eight one" in html and "eight three" in html and "samples file not found" in html
    assert "builtin:smollm2-135m" in html and "5334b2650881" in html
    # the folder above (runs/ablate): one line naming the ablations in it
    assert main(["view", str(tmp_path), "--out", str(out)]) == 2
    assert "it holds steps-quick: view one of them" in capsys.readouterr().err


def test_the_shipped_ablation_results_render(tmp_path):
    """docs/results/steps: a real results.json (no samples beside it) and its plots."""
    root = Path(__file__).resolve().parent.parent / "docs" / "results" / "steps"
    out = tmp_path / "steps.html"
    assert main(["view", str(root), "--out", str(out)]) == 0
    html = out.read_text()
    rows = json.loads((root / "results.json").read_text())["rows"]
    assert all(r["variant"] in html for r in rows)
    assert html.count("data:image/png;base64,") == len(list(root.glob("*.png")))


def test_view_never_imports_torch(four_and_eight, tmp_path):
    """A page is written without loading torch (so it takes well under a second)."""
    import subprocess
    import sys

    a, _ = four_and_eight
    root = Path(__file__).resolve().parent.parent / "docs" / "results" / "steps"
    code = ("import sys; from elfctl.cli import main; "
            f"assert main(['view', {str(a)!r}, '--out', {str(tmp_path / 'a.html')!r}]) == 0; "
            f"assert main(['view', {str(root)!r}, '--out', {str(tmp_path / 'b.html')!r}]) == 0; "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH"), out[-300:]
