"""Training length: ``train.steps`` / ``train.epochs`` and the warm-up, resolved against the training set.

The paper states its lengths in epochs (ELF-B 5 on OpenWebText, ELF-M 4, ELF-L 3, XSum and WMT14 100, warm-up
half an epoch); an epoch is ``examples / batch_size`` optimizer steps, so ``epochs`` becomes
``ceil(epochs × examples / batch_size)`` steps once the dataset is known (the trainer prints it at start).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class TrainLength:
    steps: int
    warmup_steps: int
    steps_per_epoch: float
    epochs: Optional[float]          # as the recipe said it (None: given in steps)
    warmup_epochs: Optional[float]   # as the recipe said it (None: given in steps)

    def describe(self) -> str:
        """One line for the start of training (plain decimals, never 1.2e+04; "1 step", "2 steps")."""
        total = (f"train.epochs {self.epochs:g} = {_count(self.steps, 'step')}" if self.epochs is not None
                 else f"{_count(self.steps, 'step')} ({_plain(self.steps / self.steps_per_epoch)} epochs)")
        warm = (f"optim.warmup_epochs {self.warmup_epochs:g} = {_count(self.warmup_steps, 'step')}"
                if self.warmup_epochs is not None else _count(self.warmup_steps, "warm-up step"))
        return f"training length: {total} at {_plain(self.steps_per_epoch)} steps per epoch; {warm}"

    def warning(self) -> Optional[str]:
        """A warm-up longer than the run never reaches the peak lr: say so in one line."""
        if self.warmup_steps > self.steps:
            return (f"warning: the warm-up ({self.warmup_steps} steps) is longer than the run ({self.steps} steps): "
                    f"the lr never reaches its peak; lower optim.warmup_steps / optim.warmup_epochs")
        return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _plain(x: float) -> str:
    """Three significant digits, or the whole integer part, in plain decimals: 0.0128, 2.5, 157, 35156."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    text = f"{x:.{max(0, 2 - math.floor(math.log10(abs(x))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _epochs_to_steps(epochs: float, steps_per_epoch: float) -> int:
    # round() first: 0.5 × 9530 / 64 is exactly representable, but e.g. 3 × 10 / 3 may land a hair above 10
    return math.ceil(round(epochs * steps_per_epoch, 9))


def resolve_length(train_cfg, optim_cfg, num_examples: int) -> TrainLength:
    """Steps and warm-up steps of a run over ``num_examples`` training examples."""
    per_epoch = num_examples / train_cfg.batch_size
    if train_cfg.epochs is not None:
        steps = max(1, _epochs_to_steps(train_cfg.epochs, per_epoch))
    else:
        steps = int(train_cfg.steps)
    warmup_epochs = getattr(optim_cfg, "warmup_epochs", None)
    warmup = (_epochs_to_steps(warmup_epochs, per_epoch) if warmup_epochs is not None
              else int(optim_cfg.warmup_steps))
    return TrainLength(steps=steps, warmup_steps=warmup, steps_per_epoch=per_epoch, epochs=train_cfg.epochs,
                       warmup_epochs=warmup_epochs)
