"""Which fine-tunes ``auto`` tries, at which rates, and the ``TrainRecipe`` of each run.

Few images per class favour methods that move few weights (the head, biases, scales, low-rank updates)
and a fine-tune that starts from the probe (LP-FT: from the sweep's best probe, its pooling and blocks as the
head's, so its start is the best probe); with more images the plain full fine-tune and DoRA join.
Each method gets log-spaced rates around what ``benchmarks/results/methods.md`` found on digits: SGD
(the ViT paper's transfer optimiser) for the full fine-tunes, AdamW for the parameter-efficient ones. The plain
full fine-tune uses label smoothing 0.1 (the quickstart's choice on digits validation: 95.3% with, 93.9%
without); LP-FT none, as Kumar et al. fine-tune from the probe. The augmentation is the candidate's own
(``augment.py``: auto's duel chooses one for all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..adapters.lora import LoraSettings
from ..config import ModelConfig
from ..data import DataConfig
from ..training.config import EvalConfig, OptimConfig, OutputConfig, ScheduleConfig, TrainConfig
from ..training.recipe import TrainRecipe
from .augment import augment_config
from .halving import Candidate

FEW_IMAGES_PER_CLASS = 20  # below this many training images per class, the "few" menu


@dataclass(frozen=True)
class MethodPlan:
    """A menu entry: the recipe's ``method`` and the sections it sets, its optimiser and rate range."""

    method: str
    optimizer: str
    lr_range: tuple[float, float]
    head_init: str = "zeros"
    lora: LoraSettings = field(default_factory=LoraSettings)
    label_smoothing: float = 0.0


MENU: dict[str, MethodPlan] = {
    "full": MethodPlan("full", "sgd", (1e-2, 1e-1), label_smoothing=0.1),
    "lp-ft": MethodPlan("full", "sgd", (1e-3, 3e-2), head_init="probe"),
    "head": MethodPlan("head", "adamw", (3e-3, 1e-1)),
    "lora": MethodPlan("lora", "adamw", (1e-3, 3e-2), lora=LoraSettings(r=8, alpha=16, merge=True)),
    "dora": MethodPlan("lora", "adamw", (1e-3, 3e-2), lora=LoraSettings(r=8, alpha=16, merge=True, use_dora=True)),
    "bitfit": MethodPlan("bitfit", "adamw", (1e-3, 3e-2)),
    "ssf": MethodPlan("ssf", "adamw", (1e-3, 3e-2)),
}
FEW = ("lp-ft", "head", "lora", "bitfit", "ssf")
MORE = ("full", "lp-ft", "lora", "dora", "ssf")


def log_rates(low: float, high: float, count: int) -> list[float]:
    """``count`` rates evenly spaced in log10 from ``low`` to ``high`` (3 significant digits)."""
    if count == 1:
        return [float(f"{math.sqrt(low * high):.3g}")]
    step = (math.log10(high) - math.log10(low)) / (count - 1)
    return [float(f"{10 ** (math.log10(low) + i * step):.3g}") for i in range(count)]


def methods_for(images_per_class: float) -> tuple[str, ...]:
    return FEW if images_per_class < FEW_IMAGES_PER_CLASS else MORE


def middle_out(count: int) -> list[int]:
    """Indices ``0..count-1`` from the middle outwards, the lower side first: 5 -> [2, 1, 3, 0, 4]."""
    middle = (count - 1) // 2
    order = [middle]
    for step in range(1, count):
        order += [i for i in (middle - step, middle + step) if 0 <= i < count]
    return order


def candidates_for(images_per_class: float, rates_per_method: int = 3,
                   methods: "tuple[str, ...] | None" = None, augment: str = "crop-flip") -> list[Candidate]:
    """Every (method, rate) pair of the menu for this much data, in the order the first halving rung runs them:
    every method at its middle rate first, then every method at the next rate out, and so on; so a first rung
    that the budget cuts short has still tried each method at its most likely rate. All train with ``augment``
    (``augment.AUGMENTS``; auto's duel chooses it; validated where it is read, ``AutoSettings.augments``, and again by
    ``augment_config`` when a candidate's recipe is built)."""
    if not 1 <= rates_per_method <= 5:
        raise ValueError(f"rates_per_method must be 1 to 5, got {rates_per_method}")
    chosen = methods or methods_for(images_per_class)
    unknown = [m for m in chosen if m not in MENU]
    if unknown:
        raise ValueError(f"unknown auto method(s) {unknown}; the menu is {list(MENU)}")
    rates = {m: log_rates(*MENU[m].lr_range, rates_per_method) for m in chosen}
    return [Candidate(m, rates[m][i], augment) for i in middle_out(rates_per_method) for m in chosen]


@dataclass
class RunSettings:
    """What every run of one ``auto`` call shares: model, data, batch, precision, seed."""

    model: str
    data: str
    image_size: "int | None"
    batch_size: int
    precision: str = "no"
    seed: int = 0
    num_workers: int = 0
    val_fraction: float = 0.1
    cpu: bool = False
    # the probe sweep's best configuration: LP-FT's head reads it and starts from its probe (None: the class token
    # of the last block, the stock head)
    probe_pooling: "str | None" = None
    probe_last_n: "int | None" = None


def candidate_recipe(run: RunSettings, candidate: Candidate, steps: int, output_dir: str, *,
                     eval_every: "int | None" = None, test_split: "str | None" = "none",
                     wise_ft: bool = False, keep_start_within_noise: "bool | None" = False) -> TrainRecipe:
    """The ``vit-transfer train`` recipe of ``candidate`` run for ``steps`` optimiser steps.

    The test split is off by default: runs that choose are scored on validation only. ``wise_ft``: the run ends
    with WiSE-FT (alpha chosen on validation, 1 included: never below the fine-tune there).
    ``keep_start_within_noise`` is off for the halving's runs (they measure the fine-tune, not its start); the
    winner's run passes None, ``train``'s default (on for LP-FT), so its recipe.yaml reproduces it.
    """
    plan = MENU[candidate.method]
    warmup = min(max(steps // 10, 0), 100)
    from_probe = plan.head_init == "probe"  # LP-FT: the head reads the sweep's best configuration and starts from it
    return TrainRecipe(
        model=ModelConfig(source=run.model, image_size=run.image_size, head_init=plan.head_init,
                          pooling=run.probe_pooling if from_probe else None,
                          head_last_n=run.probe_last_n if from_probe else None),
        data=DataConfig(source=run.data, test_split=test_split, val_fraction=run.val_fraction,
                        split_seed=run.seed, num_workers=run.num_workers),
        augment=augment_config(candidate.augment, plan.label_smoothing),
        method=plan.method,
        lora=plan.lora,
        optim=OptimConfig(name=plan.optimizer, lr=candidate.lr),
        schedule=ScheduleConfig(name="cosine", warmup_steps=warmup),
        train=TrainConfig(max_steps=steps, batch_size=run.batch_size, precision=run.precision, seed=run.seed,
                          log_every=max(steps, 1), cpu=run.cpu, wise_ft=wise_ft,
                          keep_start_within_noise=keep_start_within_noise),
        eval=EvalConfig(every_steps=eval_every),
        output=OutputConfig(dir=output_dir, log_with="none", overwrite=True),
    )
