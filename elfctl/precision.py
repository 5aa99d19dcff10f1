"""The one precision policy of every command that runs the network: train, distill, sample, ablate, benchmarks.

* CUDA: bf16 autocast for the network when the command's ``bf16`` setting is on (the heads and input projections
  stay fp32 inside the model), and TF32 for the matmuls left in fp32, always: it depends on the device only, so an
  ablation whose variants train and sample in one process never changes it between them.
* CPU: fp32 throughout (``bf16`` is ignored there), full-precision fp32 matmuls.

Set with ONE API, ``torch.set_float32_matmul_precision``: after it every reader agrees (``torch.
get_float32_matmul_precision()``, the per-backend ``fp32_precision`` and the legacy ``allow_tf32`` flags). Setting
the per-backend ``torch.backends.cuda.matmul.fp32_precision`` instead leaves ``get_float32_matmul_precision()``
raising "mix of the legacy and new APIs", which Inductor reads while compiling (pytorch issue 166387), so
``train.compile`` could fail after sampling had set it. Each command applies the policy when it starts and records
:meth:`Precision.label` (run metadata, samples headers, benchmark rows). The Gen PPL judge is the exception: it
scores in its own dtype (``eval.judge_dtype``, part of the protocol) at full fp32 matmul precision
(:func:`ieee_fp32`), whatever a training or sampling command before it in the same process applied.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch


@dataclass(frozen=True)
class Precision:
    device_type: str
    bf16: bool   # bf16 autocast for the network (CUDA only)
    tf32: bool   # TF32 for the fp32 matmuls (CUDA only)

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return torch.bfloat16 if self.bf16 else None

    @property
    def matmul_precision(self) -> str:
        """The value given to ``torch.set_float32_matmul_precision``."""
        return "high" if self.tf32 else "highest"

    @property
    def label(self) -> str:
        """``bf16-autocast+tf32`` / ``fp32+tf32`` on CUDA, ``fp32`` elsewhere."""
        return ("bf16-autocast" if self.bf16 else "fp32") + ("+tf32" if self.tf32 else "")

    def record(self) -> dict:
        return {"label": self.label, "autocast": "bfloat16" if self.bf16 else None,
                "fp32_matmul": "tf32" if self.tf32 else "ieee",
                "set_with": f"torch.set_float32_matmul_precision('{self.matmul_precision}')"}


def policy(device: torch.device | str, bf16: bool) -> Precision:
    """The policy of a command on ``device`` with its ``bf16`` setting."""
    cuda = torch.device(device).type == "cuda"
    return Precision(torch.device(device).type, bf16=bool(bf16) and cuda, tf32=cuda)


def apply(p: Precision) -> Precision:
    """Make ``p`` the process's fp32 matmul precision (the one setter; see the module doc); returns ``p``."""
    torch.set_float32_matmul_precision(p.matmul_precision)
    return p


@contextlib.contextmanager
def ieee_fp32() -> Iterator[None]:
    """Full-precision fp32 matmuls inside, the process's setting restored after (through the same one setter)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
