"""The ``probe:`` recipe section and the ``vit-transfer probe`` recipe (model + data + probe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ModelConfig
from ..data import DataConfig


@dataclass
class ProbeConfig:
    """How features are extracted and which probes run on them."""

    # features
    pooling: Literal["cls", "mean", "cls+mean"] | None = None  # None: model.pooling, else "cls"
    last_n: int = 1  # concatenate the pooled features of the last N blocks
    batch_size: int = 64
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it (GPU or CPU), else fp32
    cache: bool = True
    cache_dir: str | None = None  # None: $HF_HOME/vit_transfer/features or ~/.cache/vit_transfer/features
    # linear probe: L2 logistic regression, C chosen on the validation split
    linear: bool = True
    c_grid: list[float] | None = None  # explicit C values (no refinement); None: coarse-then-fine search
    c_exponents: tuple[float, float] = (-6.0, 5.0)  # coarse search: C = 10**linspace(lo, hi, c_steps)
    c_steps: int = 12
    c_refine_steps: int = 4  # extra values within one coarse step of the best (0: none)
    max_iter: int = 1000  # L-BFGS iterations per fit
    val_fraction: float = 0.1  # carved from train features to choose C when the eval split is the report split
    # few-shot ridge regression (big_vision fewshot_lsr)
    fewshot: bool = True
    shots: list[int] = field(default_factory=lambda: [1, 5, 10, 25])
    fewshot_draws: int = 3
    fewshot_l2: float = 1024.0
    # outputs
    save_model: bool = True  # OUTPUT_DIR/model: the backbone with the probe as its classifier


@dataclass
class ProbeRecipe:
    """``vit-transfer probe RECIPE.yaml``: which backbone, which data, which probes, where to write."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    output_dir: str = "runs/probe"
    seed: int = 0
