"""The one precision policy (elfctl.precision): what it is per device, that its one setter leaves every reader of
the fp32 matmul precision consistent, and that runs and samples record it."""

import json

import pytest
import torch

from elfctl.precision import apply, policy


@pytest.fixture
def restore_matmul_precision():
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def test_policy_per_device():
    assert policy("cuda", True).label == "bf16-autocast+tf32" and policy("cuda:1", False).label == "fp32+tf32"
    assert policy("cpu", True).label == "fp32" and policy("cpu", True).autocast_dtype is None  # bf16 ignored
    assert policy("cuda", True).autocast_dtype == torch.bfloat16
    # TF32 depends on the device alone: an ablation's variants (bf16 or not, training or sampling) share it
    assert policy("cuda", True).tf32 and policy("cuda", False).tf32 and not policy("cpu", False).tf32
    assert policy("cuda", True).record() == {"label": "bf16-autocast+tf32", "autocast": "bfloat16",
                                             "fp32_matmul": "tf32",
                                             "set_with": "torch.set_float32_matmul_precision('high')"}


def test_the_one_setter_leaves_every_reader_consistent(restore_matmul_precision):
    """After apply(), the global getter (which Inductor reads), the per-backend value and the legacy flag all
    answer and agree; none raises "mix of the legacy and new APIs" (pytorch issue 166387)."""
    apply(policy("cuda", True))
    assert torch.get_float32_matmul_precision() == "high"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32" and torch.backends.cuda.matmul.allow_tf32 is True
    apply(policy("cpu", False))
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.fp32_precision == "ieee" and torch.backends.cuda.matmul.allow_tf32 is False
    apply(policy("cuda", False))  # back and forth: still consistent
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.allow_tf32 is True


@pytest.mark.slow
def test_training_and_sampling_record_the_policy(tiny_recipe, tmp_path, restore_matmul_precision):
    from elfctl.cli import main
    from elfctl.rundir.checkpoint import latest_checkpoint, read_meta

    torch.set_float32_matmul_precision("high")  # whatever an earlier command left: training applies its own
    assert main(["train", tiny_recipe()]) == 0
    assert torch.get_float32_matmul_precision() == "highest"  # the CPU's policy
    meta = read_meta(latest_checkpoint(tmp_path / "run"))
    assert meta["precision"] == "fp32" and (meta["micro_batch"], meta["grad_accum"]) == (4, 1)
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--run", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["precision"] == "fp32"


def test_the_judge_scores_at_full_fp32_whatever_ran_before(restore_matmul_precision):
    """In one process (elfctl ablate: train, sample, then eval) the judge never inherits TF32."""
    from elfctl.eval.genppl import Row, score_rows
    from elfctl.eval.judge import Judge

    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None):
            seen.append(torch.get_float32_matmul_precision())
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 7)})()

    apply(policy("cuda", True))  # what a training or sampling command on a GPU leaves
    score_rows([Row([1, 2, 3], [1, 1], [1, 2, 3])], Judge("rec", Recorder(), None), batch_size=1)
    assert seen == ["highest"]
    assert torch.get_float32_matmul_precision() == "high"  # restored for the commands after it
