"""``TrainRecipe``: the whole of a training run as one YAML file (see ``recipes/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters.lora import LoraSettings
from ..adapters.vpt import VPTSettings
from ..config import ModelConfig, load_recipe
from ..errors import ConfigError
from ..data import AugmentConfig, DataConfig
from .config import EvalConfig, OptimConfig, OutputConfig, ScheduleConfig, TrainConfig


@dataclass
class TrainRecipe:
    """Sections: ``model``, ``data``, ``augment``, ``method`` + ``lora`` / ``peft``, ``optim``, ``schedule``,
    ``train``, ``eval``, ``output``. Every value can be overridden on the command line (``optim.lr=0.003``)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method: str = "full"  # a name in vit_transfer.methods.METHODS: full | head | lora | bitfit | norm | peft | ssf | vpt
    lora: LoraSettings = field(default_factory=LoraSettings)
    peft: dict[str, Any] = field(default_factory=dict)  # method: peft: peft_type + that peft config's options
    vpt: VPTSettings = field(default_factory=VPTSettings)  # method: vpt: tokens, deep
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        from ..methods import get_method

        method = get_method(self.method)
        method.validate(self.method_options())
        if self.train.wise_ft and not method.has_plain_form:
            raise ConfigError(f"train.wise_ft interpolates plain weights; method {self.method!r} has no plain form")
        if self.peft and method.options_section != "peft":
            raise ConfigError(f"the peft: section is read only with method: peft (method is {self.method!r})")
        if self.model.head_init == "probe" and self.model.head != "linear":
            raise ConfigError(f"model.head_init: probe fits a linear probe; model.head must be linear, got {self.model.head!r}")

    def method_options(self):
        """The settings of ``method``: its own recipe section (``Method.options_section``), or None."""
        from ..methods import get_method

        section = get_method(self.method).options_section
        return getattr(self, section) if section else None


def load_train_recipe(path: "str | Path | None", overrides: "list[str] | None" = None) -> TrainRecipe:
    """Read and validate a training recipe; unknown keys and wrong types fail here, before any work."""
    return load_recipe(path, overrides, TrainRecipe)
