"""``TrainRecipe``: the whole of a training run as one YAML file (see ``recipes/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..adapters.lora import LoraSettings
from ..config import ModelConfig, load_recipe
from ..data import AugmentConfig, DataConfig
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


def load_train_recipe(path: "str | Path | None", overrides: "list[str] | None" = None) -> TrainRecipe:
    """Read and validate a training recipe; unknown keys and wrong types fail here, before any work."""
    return load_recipe(path, overrides, TrainRecipe)
