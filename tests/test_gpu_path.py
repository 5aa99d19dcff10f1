"""The GPU path's logic, checked on the CPU: MFU FLOP counts; CUDA-only checks that skip without a GPU."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from elfctl.model import ELF
from elfctl.train.flops import backward_flops, forward_flops, naive_step_flops, step_flops


def _tiny():
    torch.manual_seed(0)
    # C = 6, bottleneck 4, hidden 16 (2 heads), vocabulary 11, 2 blocks, 4 + 4 + 4 prefix tokens
    return ELF(6, 11, depth=2, hidden_size=16, num_heads=2, bottleneck_dim=4)


def test_forward_flops_by_hand():
    model = _tiny()
    # multiply-accumulates of one row, L = 5, N = 5 + 12 = 17 tokens in the blocks:
    #   input projections per token: sc_proj 12·6 + in_proj1 6·4 + in_proj2 4·16 = 160      × 5  =     800
    #   time and SC-CFG embedders per row: 2 · (256·16 + 16·16)                                  =   8,704
    #   block linears per token: qkv 16·48 + proj 16·16 + w12 16·84 + w3 42·16 = 3,040  × 17 × 2 = 103,360
    #   attention: QKᵀ and AV, 2 · 17² · 16 per block                                      × 2  =  18,496
    #   flow head per token: 16·6 = 96                                                      × 5  =     480
    # = 131,840 MACs = 263,680 FLOPs. The decode head adds (16·6 + 6·11) · 5 = 810 MACs per decode row.
    assert forward_flops(model, 1, 5) == 263_680
    assert forward_flops(model, 3, 5, logit_rows=1) == 3 * 263_680 + 1_620
    # backward: twice the forward, less the input gradients of sc_proj (12·6 · 5) and the embedders' first
    # layers (2 · 256·16), which are never formed
    assert backward_flops(model, 1, 5) == 2 * 263_680 - 2 * (360 + 8_192)
    assert naive_step_flops(100, 2, 5) == 6_000


def _counted(fn) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # attention as countable bmm
        fn()
    return counter.get_total_flops()


def test_flops_agree_with_torch_flop_counter_on_a_whole_objective_step():
    from elfctl.config import load_config
    from elfctl.objective import ElfObjective

    model = _tiny()
    cfg = load_config(None, ["model.preset=elf-tiny"])
    objective = ElfObjective.from_config(cfg) if hasattr(ElfObjective, "from_config") else ElfObjective(cfg.objective)
    B, L, C = 4, 5, 6
    x = torch.randn(B, L, C)
    ids = torch.randint(0, 11, (B, L))
    am = torch.ones(B, L, dtype=torch.bool)
    cm = torch.zeros(B, L, dtype=torch.bool)
    d = objective.draw(x)
    d.decode_rows = torch.tensor([True, False, False, False])
    d.sc_rows = torch.tensor([True, True, True, False])  # rows 1, 2 run both helper passes
    guided = objective.use_sc_cfg and cfg.objective.self_cond_prob > 0
    assert guided

    def step():
        objective(model, x, ids, am, cm, draws=d).loss.backward()

    want = step_flops(model, B, L, decode_rows=1, helper_rows=2, helper_passes=2)
    assert _counted(step) == want.total
    assert want.helper == 2 * forward_flops(model, 2, L)
    # the naive 6·N·tokens counts the decode head on every row and leaves out the prefix and helper passes
    assert want.total != naive_step_flops(sum(p.numel() for p in model.parameters()), B, L)


def test_flops_of_a_single_pass_agree_with_torch_flop_counter():
    model = _tiny()
    z = torch.randn(3, 7, 6)
    t = torch.rand(3)
    rows = torch.tensor([0, 2])
    with torch.no_grad():
        got = _counted(lambda: model(z, t, return_logits=True, logit_rows=rows))
    assert got == forward_flops(model, 3, 7, logit_rows=2)


def test_compile_blocks_in_place_keeps_keys_and_results():
    from elfctl.train.compiled import compile_blocks, is_compiled

    torch._dynamo.reset()
    model = _tiny()
    eager = _tiny()
    keys = list(model.state_dict())
    assert compile_blocks(model, backend="eager") == 2  # the eager backend: dynamo's tracing without inductor
    assert all(is_compiled(b) for b in model.blocks) and not is_compiled(model)
    assert list(model.state_dict()) == keys  # no "_orig_mod." prefix: checkpoints unchanged
    z, t = torch.randn(4, 5, 6), torch.rand(4)
    rows = torch.tensor([1])
    for r in (rows, torch.tensor([0, 3]), torch.tensor([], dtype=torch.long)):  # logit rows of any count
        got = model(z, t, decode=True, return_logits=True, logit_rows=r)
        want = eager(z, t, decode=True, return_logits=True, logit_rows=r)
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # helper passes: other row counts, no grad
        torch.testing.assert_close(model(z[:3], t[:3])[0], eager(z[:3], t[:3])[0])
    torch._dynamo.reset()


# ------------------------------------------------------------------ the judge on the run's device
def _tiny_judge_dir(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from conftest import make_tokenizer_dir

    tok = make_tokenizer_dir(tmp_path / "tok")
    torch.manual_seed(0)
    d = tmp_path / "judge"
    tok.save_pretrained(str(d))
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=2, n_head=2, n_positions=64)).save_pretrained(
        str(d))
    return d


TEXTS = ["the cat sat on the mat", "a dog", "the big dog ran in the park on the mat", "cat", "the mat sat"]


def test_judge_device_auto_is_the_gpu_when_there_is_one_and_scores_are_unchanged(tmp_path):
    from elfctl.errors import ConfigError
    from elfctl.eval.genppl import score_texts
    from elfctl.eval.judge import judge_device, load_judge
    from elfctl.eval.protocol import make_protocol

    d = _tiny_judge_dir(tmp_path)
    auto, cpu = load_judge(str(d)), load_judge(str(d), device="cpu")  # default: auto
    want = "cuda" if torch.cuda.is_available() else "cpu"  # auto: the GPU where there is one, else the CPU
    assert judge_device("auto").type == want and next(auto.model.parameters()).device.type == want
    proto = make_protocol("elf", auto.name, bos="[PAD]")
    a = score_texts(TEXTS, auto, proto, batch_size=2)
    b = score_texts(TEXTS, cpu, proto, batch_size=1)
    assert [s.n_scored for s in a] == [s.n_scored for s in b]
    # the same arithmetic on the CPU; on a GPU, IEEE fp32 (the judge never uses TF32) with its own kernels
    assert [s.nll_sum for s in a] == pytest.approx([s.nll_sum for s in b], rel=1e-6 if want == "cpu" else 1e-4)
    with pytest.raises(ConfigError, match="judge device: 'tpu' is not valid; use auto, cpu, cuda or cuda:N"):
        load_judge(str(d), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="judge device: 'cuda' asked for, but no CUDA device is available"):
            load_judge(str(d), device="cuda")
    # bf16 is a judge setting of its own, recorded in the protocol
    assert make_protocol("elf", auto.name, judge_dtype="bfloat16").hash != make_protocol("elf", auto.name).hash


def test_judge_batches_are_sorted_by_length():
    from elfctl.eval.genppl import Row, score_rows
    from elfctl.eval.judge import Judge

    widths = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None):
            widths.append((input_ids.shape[0], input_ids.shape[1]))
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 16)})()

    lengths = [9, 2, 7, 3, 8, 2]
    rows = [Row(list(range(n)), [1] * (n - 1), list(range(n))) for n in lengths]
    out = score_rows(rows, Judge("rec", Recorder(), None), batch_size=2)
    assert widths == [(2, 2), (2, 7), (2, 9)]  # (2, 2) (3, 7) (8, 9): similar lengths share a batch
    assert [n for _, n in out] == [n - 1 for n in lengths]  # results back in the input order


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_judge_on_the_gpu_scores_like_the_cpu(tmp_path):
    from elfctl.eval.genppl import score_texts
    from elfctl.eval.judge import load_judge
    from elfctl.eval.protocol import make_protocol

    d = _tiny_judge_dir(tmp_path)
    cpu = load_judge(str(d), device="cpu")
    gpu = load_judge(str(d))  # auto: the GPU
    assert next(gpu.model.parameters()).device.type == "cuda"
    proto = make_protocol("elf", cpu.name, bos="[PAD]")
    want = [s.nll_sum for s in score_texts(TEXTS, cpu, proto, batch_size=2)]
    assert [s.nll_sum for s in score_texts(TEXTS, gpu, proto, batch_size=2)] == pytest.approx(want, rel=1e-4)
    bf16 = load_judge(str(d), dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert [s.nll_sum for s in score_texts(TEXTS, bf16, proto, batch_size=2)] == pytest.approx(want, rel=3e-2)


# ------------------------------------------------------------------ the training benchmark's command line
def _bench_train():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_train_accepts_the_documented_flags(capsys, tmp_path):
    bench = _bench_train()
    tiny = ["--batch", "2", "--length", "4", "--steps", "1", "--warmup", "0", "--latent-dim", "8", "--vocab", "11",
            "--set", "model.depth=1", "--set", "model.hidden_size=16", "--set", "model.num_heads=2",
            "--set", "optim.optimizer=adamw"]
    recipe = tmp_path / "bench.yaml"  # a recipe file of its own: nothing here resolves hub assets
    recipe.write_text("model:\n  preset: elf-small\noptim:\n  optimizer: muon\n")
    assert bench.main(["--recipe", str(recipe), "--preset", "elf-tiny", "--device", "cpu", *tiny,
                       "--json", str(tmp_path / "r.json")]) == 0
    import json

    row = json.loads((tmp_path / "r.json").read_text())
    assert (row["recipe"], row["preset"], row["precision"], row["compile"]) == (str(recipe), "elf-tiny", "fp32", False)
    assert "mfu_pct" not in row  # no peak FLOP/s known for a CPU
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert bench.main(["--device", "cuda", *tiny]) == 2  # the flag exists; no GPU here is one line
        err = capsys.readouterr().err
        assert err.strip() == "error: --device: 'cuda' asked for, but no CUDA device is available; use auto or cpu"
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("NVIDIA H200") == 989.0 and bench.peak_tflops("Some GPU") is None


def test_eval_judge_dtype_flag_reaches_the_protocol(tmp_path, capsys):
    import json

    from elfctl.cli import main

    d = _tiny_judge_dir(tmp_path)
    s = tmp_path / "s.jsonl"
    s.write_text("".join(json.dumps(r) + "\n" for r in [
        {"type": "header", "run_dir": "nowhere", "seed": 0, "sampler": {"steps": 2}},
        *({"type": "sample", "index": i, "text": t, "token_ids": []} for i, t in enumerate(TEXTS))]))
    res = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.json"
        assert main(["eval", "--samples", str(s), "--judge", str(d), "--judge-dtype", dtype, "--device", "cpu",
                     "--bootstrap", "0", "--out", str(out)]) == 0
        res[dtype] = json.loads(out.read_text())
    text = {k: json.dumps(v["protocol"]) for k, v in res.items()}
    assert '"judge_dtype": "bfloat16"' in text["bfloat16"] and '"judge_dtype": "float32"' in text["float32"]
    capsys.readouterr()
    assert main(["eval", "--samples", str(s), "--judge-dtype", "fp8"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["error: --judge-dtype: 'fp8' is not valid; choose one of float32, bfloat16, float64"]
