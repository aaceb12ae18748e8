"""The training recipe's own sections: optimiser, schedule, loop, evaluation, output.

Defaults follow the ViT paper's transfer protocol (SGD momentum 0.9, no weight decay, clip at
global norm 1, cosine decay with linear warmup) so a recipe only states what differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError


def require_positive(section: str, **values: "int | float | None") -> None:
    """Each named value is unset (None) or at least 1; the error names the recipe key."""
    for key, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"{section}.{key} must be at least 1, got {value}")


@dataclass
class OptimConfig:
    """``optim:``: which optimiser, its learning rate and regularisation."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adamw only
    eps: float = 1e-8  # adamw only
    weight_decay: float = 0.0  # applied to matrices only (not biases, norms, position/class tokens)
    clip_grad_norm: float | None = 1.0  # global L2 norm over all trainable parameters; null: no clipping
    layer_decay: float | None = None  # layer-wise lr decay: block i of L gets lr * decay**(L + 1 - i)
    head_lr: float | None = None  # the head's own rate (null: lr); e.g. LP-FT with a gentle backbone rate
    fused: bool = True  # one fused kernel per step where torch has it for the device (AdamW, SGD); false: torch's default

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if self.head_lr is not None and self.head_lr <= 0:
            raise ConfigError(f"optim.head_lr must be positive (or null: optim.lr), got {self.head_lr}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ConfigError(f"optim.layer_decay must be in (0, 1], got {self.layer_decay}")


@dataclass
class ScheduleConfig:
    """``schedule:``: learning-rate shape over the optimiser steps, after a linear warmup from 0."""

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak (cosine / linear)

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"schedule.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


DEFAULT_MAX_STEPS = 1000  # a run's length when a recipe gives neither train.max_steps nor train.epochs


@dataclass
class TrainConfig:
    """``train:``: the loop. ``batch_size`` is global: images per optimiser step over all processes.

    A run's length is ``max_steps`` (optimiser steps) or ``epochs``, one of them: both set is an error (one
    would be ignored), neither set means ``DEFAULT_MAX_STEPS`` steps.
    """

    max_steps: int | None = None  # optimiser steps; null with epochs null: DEFAULT_MAX_STEPS
    epochs: float | None = None  # passes over the training set (fractions allowed), instead of max_steps
    batch_size: int = 512
    grad_accum_steps: int = 1  # per-process micro-batch = batch_size / (processes * grad_accum_steps)
    precision: Literal["no", "bf16", "fp16", "auto"] = "no"  # auto: bf16 where the hardware has it (GPU or CPU), else no
    seed: int = 0
    ema_decay: float | None = None  # e.g. 0.9999: keep an EMA of the weights, evaluate and save it
    log_every: int = 10
    checkpoint_every: int | None = None  # optimiser steps between checkpoints; null: none
    keep_checkpoints: int = 2  # newest checkpoints kept (older ones deleted)
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    cpu: bool = False  # force the CPU even when an accelerator is present
    compile: bool = False  # torch.compile the training forward/backward (batch dim dynamic: no recompile per size)
    keep_best: bool | None = None  # return the best validation step's weights; null: on when there is a validation split
    early_stopping_patience: int | None = None  # stop after this many evaluations without a better validation top-1
    # return the starting model unless the fine-tune beats it on the validation images by more than one standard
    # error of the paired difference (vit_transfer/selection.py); null: on for LP-FT (model.head_init: probe)
    keep_start_within_noise: bool | None = None
    wise_ft: bool = False  # WiSE-FT: interpolate with the starting weights, alpha chosen on validation (training/wise_ft.py)
    wise_ft_alphas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

    def __post_init__(self) -> None:  # the one place these values are checked
        require_positive("train", max_steps=self.max_steps, batch_size=self.batch_size,
                         grad_accum_steps=self.grad_accum_steps, log_every=self.log_every,
                         checkpoint_every=self.checkpoint_every, keep_checkpoints=self.keep_checkpoints,
                         early_stopping_patience=self.early_stopping_patience)
        if self.max_steps is not None and self.epochs is not None:
            raise ConfigError(
                f"train.max_steps={self.max_steps} and train.epochs={self.epochs} are both set, and a run has one "
                f"length: keep one and set the other to null (e.g. train.max_steps=null train.epochs={self.epochs})"
            )
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.max_steps is None and self.epochs is None:
            self.max_steps = DEFAULT_MAX_STEPS
        if self.early_stopping_patience and self.keep_best is False:
            raise ConfigError("train.early_stopping_patience stops on the best validation step: it needs "
                              "train.keep_best (true, or null with a validation split)")
        if self.keep_start_within_noise and self.keep_best is False:
            raise ConfigError("train.keep_start_within_noise compares the returned model with the start on the "
                              "validation split: it needs train.keep_best (true, or null with a validation split)")
        if self.wise_ft and (not self.wise_ft_alphas or any(not 0 <= a <= 1 for a in self.wise_ft_alphas)):
            raise ConfigError(f"train.wise_ft_alphas must be values in [0, 1], got {list(self.wise_ft_alphas)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be between 0 and 1 (e.g. 0.9999), got {self.ema_decay}")


@dataclass
class EvalConfig:
    """``eval:``: held-out evaluation (top-1, top-5, loss) during and after training."""

    every_steps: int | None = None  # null: every epoch with train.keep_best, else only at the end
    batch_size: int | None = None  # per process; null: the training micro-batch

    def __post_init__(self) -> None:
        require_positive("eval", every_steps=self.every_steps, batch_size=self.batch_size)


@dataclass
class OutputConfig:
    """``output:``: where the run folder goes, logging, and the optional push to the Hub."""

    dir: str = "runs/vit-transfer"
    log_with: Literal["tensorboard", "none"] = "tensorboard"  # tensorboard is used only when installed
    overwrite: bool = False  # a fresh run into a folder holding an earlier run's outputs deletes them (else: an error)
    push_to_hub: bool = False
    hub_repo_id: str | None = None
    hub_private: bool = False
    hub_revision: str | None = None

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.hub_repo_id:
            raise ConfigError("output.push_to_hub is true but output.hub_repo_id is not set (e.g. user/vit-pets)")


__all__ = ["DEFAULT_MAX_STEPS", "EvalConfig", "OptimConfig", "OutputConfig", "ScheduleConfig", "TrainConfig"]
