"""Run a short synthetic training (used by tests as a subprocess, alone or under torchrun).

usage: python tests/train_worker.py RUN_DIR [section.key=value ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import SyntheticData  # noqa: E402

from elfctl.config import load_config  # noqa: E402
from elfctl.train.distributed import shutdown_distributed  # noqa: E402
from elfctl.train.trainer import Trainer  # noqa: E402

BASE = ["train.steps=12", "train.batch_size=8", "train.log_every=1", "train.save_every=4", "data.max_length=10",
        "model.preset=elf-tiny", "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "optim.blr=0.02",
        "optim.warmup_steps=2", "optim.ema_decay=0.9"]

if __name__ == "__main__":
    run_dir, *over = sys.argv[1:]
    cfg = load_config(None, BASE + [f"train.run_dir={run_dir}"] + over)
    Trainer(cfg, data_source=SyntheticData, log=lambda s: print(s, flush=True)).run()
    shutdown_distributed()
