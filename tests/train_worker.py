"""Run a short synthetic training (used by tests as a subprocess, alone or under torchrun).

usage: python tests/train_worker.py RUN_DIR [--learned-encoder] [--signal-at STEP:SIGNAL[:COUNT]] [section.key=value ...]

``--learned-encoder``: the synthetic encoder is a trainable embedding table (trained with the network, like
``encoder.mode=learned``).
``--signal-at 7:KILL``: the process sends itself SIGKILL (COUNT times; default once) while it encodes the batch
of step 7 (1-based), i.e. at a deterministic point of the run instead of a polled moment. Errors exit as the CLI
does (one line, the error's exit code; 130 on KeyboardInterrupt).
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from synthetic import SyntheticData  # noqa: E402

from elfctl.config import load_config  # noqa: E402
from elfctl.errors import ElfError  # noqa: E402
from elfctl.train.distributed import shutdown_distributed  # noqa: E402
from elfctl.train.trainer import Trainer  # noqa: E402

BASE = ["train.steps=12", "train.batch_size=8", "train.log_every=1", "train.save_every=4", "data.max_length=10",
        "model.preset=elf-tiny", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "optim.blr=0.02",
        "optim.warmup_steps=2", "optim.ema_decay=0.9"]


class LearnedEncoder(nn.Module):
    """A trainable token-embedding table: ids (B, L) -> latents (B, L, C)."""

    def __init__(self, vocab_size: int = 23, latent_dim: int = 8):
        super().__init__()
        self.latent_dim, self.vocab_size, self.trainable = latent_dim, vocab_size, True
        self.embedding = nn.Embedding(vocab_size, latent_dim)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.randn(vocab_size, latent_dim, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, attention_mask=None):
        return self.embedding(input_ids)


def signalling(base, at: str):
    """``base`` (a data source class) that signals its own process while encoding the batch of a given step."""
    step, name, *count = at.split(":")
    sig, times = getattr(signal, f"SIG{name}"), int(count[0]) if count else 1

    class Signalling(base):
        def __init__(self, cfg, run_dir, device):
            super().__init__(cfg, run_dir, device)
            self.calls, self.at = 0, (int(step) - 1) * cfg.train.grad_accum + 1

        def latents(self, batch, drop):
            self.calls += 1
            if self.calls == self.at:
                for _ in range(times):
                    os.kill(os.getpid(), sig)
            return super().latents(batch, drop)

    return Signalling


class LearnedSyntheticData(SyntheticData):
    def __init__(self, cfg, run_dir, device):
        super().__init__(cfg, run_dir, device)
        self.encoder = LearnedEncoder().to(device)
        self.trainable_encoder = True


if __name__ == "__main__":
    run_dir, *over = sys.argv[1:]
    learned = "--learned-encoder" in over
    over = [o for o in over if o != "--learned-encoder"]
    source = LearnedSyntheticData if learned else SyntheticData
    if "--signal-at" in over:
        i = over.index("--signal-at")
        source = signalling(source, over[i + 1])
        del over[i:i + 2]
    cfg = load_config(None, BASE + [f"train.run_dir={run_dir}"] + over)
    try:
        Trainer(cfg, data_source=source, log=lambda s: print(s, flush=True)).run()
    except ElfError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    shutdown_distributed()
