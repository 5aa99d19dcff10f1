"""Where training metrics go (``train.loggers``): jsonl always, TensorBoard and Weights & Biases when installed.

* ``jsonl``: ``<run_dir>/metrics.jsonl``, one JSON object per log step (always on; resume trims it to the
  checkpoint's step, so the file is the run's exact history);
* ``tensorboard``: event files in ``<run_dir>/tensorboard`` (needs the ``tensorboard`` package:
  ``pip install 'elfctl[tensorboard]'``); a resumed run purges events after its checkpoint's step;
* ``wandb``: a Weights & Biases run named after the recipe, in project ``train.wandb_project``, resumed by the id
  kept in ``<run_dir>/wandb_id`` (``pip install 'elfctl[wandb]'``; ``WANDB_MODE=offline`` needs no network).

An optional logger whose package is missing is a one-line ConfigError before training starts.
Only rank 0 logs.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from elfctl.errors import ConfigError

LOGGERS = ("jsonl", "tensorboard", "wandb")
PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb"}


def parse_loggers(value: str) -> list[str]:
    """``train.loggers`` as a list: jsonl first (always on), then the others named, each once."""
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise ConfigError(f"train.loggers: unknown logger '{bad[0]}'; choose from {', '.join(LOGGERS)} "
                          f"(comma-separated, e.g. jsonl,tensorboard)")
    out = ["jsonl"]
    for n in names:
        if n not in out:
            out.append(n)
    return out


def check_available(names: list[str]) -> None:
    """One line naming the missing package and the pip extra, instead of an ImportError traceback mid-run."""
    for n in names:
        pkg = PACKAGE.get(n)
        if pkg and importlib.util.find_spec(pkg) is None:
            raise ConfigError(f"train.loggers: '{n}' needs the {pkg} package, which is not installed; "
                              f"pip install 'elfctl[{n}]' or remove {n} from train.loggers")


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of ``<run_dir>/metrics.jsonl`` (none if there is no file), up to a torn last line from a kill."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


class JsonlLogger:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"

    def log(self, metrics: dict, step: int) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, run_dir: Path, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run wrote after the checkpoint we resume from
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step or None)

    def log(self, metrics: dict, step: int) -> None:
        for k, v in metrics.items():
            if k != "step" and isinstance(v, (int, float)):
                self.writer.add_scalar(f"train/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, cfg):
        import wandb

        id_file = Path(run_dir) / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        if not id_file.is_file():
            from elfctl.atomic import atomic_write_text

            atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(project=cfg.train.wandb_project, name=cfg.name, id=run_id, resume="allow",
                              dir=str(run_dir), config=cfg.to_dict())

    def log(self, metrics: dict, step: int) -> None:
        self.run.log({f"train/{k}": v for k, v in metrics.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """The run's loggers; ``log`` sends one metrics dict to each. A no-op on ranks other than 0."""

    def __init__(self, cfg, run_dir: Path, *, start_step: int, enabled: bool, log=lambda s: None):
        self.names = parse_loggers(cfg.train.loggers)
        check_available(self.names)
        self.sinks: list = []
        if not enabled:
            return
        for n in self.names:
            if n == "jsonl":
                self.sinks.append(JsonlLogger(run_dir))
            elif n == "tensorboard":
                self.sinks.append(TensorBoardLogger(run_dir, start_step))
            elif n == "wandb":
                self.sinks.append(WandbLogger(run_dir, cfg))
        if len(self.names) > 1:
            log(f"loggers: {', '.join(self.names)}")

    def log(self, metrics: dict, step: int) -> None:
        for s in self.sinks:
            s.log(metrics, step)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        self.sinks = []

