"""The real offline judge (SmolLM2-135M GGUF from PyPI via resolve_asset): real text scores far below shuffled."""

import random

import pytest


@pytest.mark.network
@pytest.mark.slow
def test_offline_judge_scores_real_text_far_below_shuffled_text():
    from elfctl.eval.inputs import Samples
    from elfctl.eval.judge import load_judge
    from elfctl.eval.report import score_samples

    texts = ["The city is the capital of the province and lies on the northern bank of the river. It was founded in "
             "the twelfth century and became an important trading centre during the Middle Ages.",
             "The company was founded in 1998 by two students. Its first product was a search engine, and it later "
             "expanded into advertising, email and mobile phones."]
    rng = random.Random(0)
    shuffled = []
    for t in texts:
        w = t.split()
        rng.shuffle(w)
        shuffled.append(" ".join(w))
    judge = load_judge("builtin:smollm2-135m")            # ~16 s: loaded once, passed as a Judge
    real = score_samples(Samples("real", texts, {}, [None] * 2), ["genppl"], judge=judge, bootstrap=0)
    shuf = score_samples(Samples("shuf", shuffled, {}, [None] * 2), ["genppl"], judge=judge, bootstrap=0)
    r, s = real["rows"]["model"]["genppl"], shuf["rows"]["model"]["genppl"]
    assert r < 80 and s > 10 * r, (r, s)
    assert real["protocol"]["bos"] == "<|endoftext|>" and real["protocol"]["eos"] == "<|endoftext|>"
    assert "offline judge builtin:smollm2-135m" in real["judge_label"]
    assert real["rows"]["model"]["entropy"] > 2

    # the first load saved a dequantised safetensors copy; the next load reads it and scores identically
    from elfctl.eval.judge import _DONE, _converted_dir
    from elfctl.data.assets import resolve_asset

    gguf = sorted(resolve_asset("builtin:smollm2-135m").glob("*.gguf"))[0]
    copy = _converted_dir(gguf, "float32", None)
    assert (copy / _DONE).is_file() and list(copy.glob("*.safetensors"))
    again = load_judge("builtin:smollm2-135m")
    assert again.model.name_or_path == str(copy)
    real2 = score_samples(Samples("real", texts, {}, [None] * 2), ["genppl"], judge=again, bootstrap=0)
    assert real2["rows"]["model"]["genppl"] == r and real2["protocol"] == real["protocol"]
