"""Learning-rate schedules: linear warmup from zero, then cosine, linear or constant."""

from __future__ import annotations

import math
import warnings

import torch

from ..errors import ConfigError
from .config import ScheduleConfig


class WarmupDecay:
    """Multiplier on the peak lr at optimiser step ``s`` (0-based); a callable object so it checkpoints.

    Warmup ends at exactly the peak on step ``warmup_steps - 1`` (no wasted zero-lr step); the decay
    then reaches ``min_lr_ratio`` at ``total_steps``.
    """

    def __init__(self, name: str, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0):
        self.name = name
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.name == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        elif self.name == "linear":
            shape = 1.0 - progress
        else:
            raise ConfigError(f"schedule.name must be cosine, linear or constant, got {self.name!r}")
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int,
                    start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiplies each parameter group's own lr (layer decay included) by ``WarmupDecay``.

    ``start_step`` resumes the schedule there (torch's ``last_epoch``; the optimizer's groups then hold
    ``initial_lr`` from the checkpoint): shaped for this run's ``total_steps``, whatever the saved run had.
    """
    warmup = cfg.warmup_steps
    if warmup > total_steps:  # e.g. a short smoke run of a long recipe: warm up over the whole run
        warnings.warn(f"schedule.warmup_steps={warmup} exceeds the run's {total_steps} steps; "
                      "warming up over all of them")
        warmup = total_steps
    fn = WarmupDecay(cfg.name, total_steps, warmup, cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn, last_epoch=start_step - 1)
