"""``TrainRecipe``: the whole of a training run as one YAML file (see ``recipes/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..adapters.lora import LoraSettings
from ..config import ModelConfig, load_recipe
from ..data import AugmentConfig, DataConfig
from ..errors import ConfigError
from .config import EvalConfig, OptimConfig, OutputConfig, ScheduleConfig, TrainConfig


@dataclass
class TrainRecipe:
    """Sections: ``model``, ``data``, ``augment``, ``method`` + ``lora``, ``optim``, ``schedule``, ``train``,
    ``eval``, ``output``. Every value can be overridden on the command line (``optim.lr=0.003``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method: Literal["full", "head", "lora"] = "full"  # head: backbone frozen; lora: adapters + head
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def check_recipe(recipe: TrainRecipe) -> TrainRecipe:
    """Checks across keys that the schema alone cannot make; each error names the key to change."""
    t, o = recipe.train, recipe.output
    if t.max_steps is None and t.epochs is None:
        raise ConfigError("set train.max_steps (optimiser steps) or train.epochs")
    for key, value in (("train.max_steps", t.max_steps), ("train.batch_size", t.batch_size),
                       ("train.grad_accum_steps", t.grad_accum_steps), ("train.log_every", t.log_every),
                       ("train.checkpoint_every", t.checkpoint_every), ("train.keep_checkpoints", t.keep_checkpoints),
                       ("eval.every_steps", recipe.eval.every_steps), ("eval.batch_size", recipe.eval.batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    if t.ema_decay is not None and not 0 < t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay must be between 0 and 1 (e.g. 0.9999), got {t.ema_decay}")
    if o.push_to_hub and not o.hub_repo_id:
        raise ConfigError("output.push_to_hub is true but output.hub_repo_id is not set (e.g. user/vit-pets)")
    if recipe.method == "lora" and recipe.lora.r < 1:
        raise ConfigError(f"lora.r must be a positive integer, got {recipe.lora.r}")
    if not 0.0 <= recipe.augment.label_smoothing < 1.0:
        raise ConfigError(f"augment.label_smoothing must be in [0, 1), got {recipe.augment.label_smoothing}")
    return recipe


def load_train_recipe(path: "str | Path | None", overrides: "list[str] | None" = None) -> TrainRecipe:
    """Read and validate a training recipe; unknown keys and wrong types fail here, before any work."""
    return check_recipe(load_recipe(path, overrides, TrainRecipe))
