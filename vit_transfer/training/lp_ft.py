"""``model.head_init: probe``: LP-FT (Kumar et al. 2022), a fine-tune that starts from the fitted linear probe.

A zero (or random) head sends large, uninformative gradients into the pretrained features during the
first steps, which then drift away from what made them good; starting from the probe's head, the
fine-tune begins at the probe's accuracy and its gradients refine instead of repair. The probe is the
library's own (``vit_transfer.probe``): frozen features of the train split (eval transform), C chosen on
a stratified slice of train, refitted on all of train, scored on the eval split (never the test split);
its standardisation is folded into the weights, which are loaded into the model's existing linear head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..errors import DataError

PROBE_PRECISION = {"no": "fp32", "bf16": "bf16", "fp16": "fp16", "auto": "auto"}  # train.precision -> probe's


@dataclass
class ProbeHead:
    """The probe the fine-tune starts from: ``logits = features @ weight.T + bias`` on the head's pooling."""

    weight: torch.Tensor
    bias: torch.Tensor
    C: float
    val_top1: float | None  # on the eval split; None without one
    seconds: float

    def metrics(self) -> dict:
        """What ``metrics.json`` records of it."""
        return {"probe_val_top1": self.val_top1, "probe_C": self.C, "probe_seconds": self.seconds}


def init_head_from_probe(model, data, *, batch_size: int, precision: str = "no", num_workers: int = 0,
                         seed: int = 0, accelerator=None, progress: bool = True) -> ProbeHead:
    """Fit the linear probe on ``model``'s frozen features of ``data.train`` and load it into the head.

    Call it before the method wraps the model (peft copies the head into ``modules_to_save`` when it wraps).
    """
    from ..data import build_transform
    from ..probe import ProbeConfig, extract_features, load_linear_head
    from ..probe.run import run_linear_probe

    start = time.perf_counter()
    config = ProbeConfig(fewshot=False, cache=False)
    pooling = model.head_spec.pooling
    transform = build_transform(model.preprocessing, train=False)

    def features(split, desc):
        return extract_features(model, split, transform, pooling=pooling, batch_size=batch_size,
                                precision=PROBE_PRECISION.get(precision, "auto"), num_workers=num_workers,
                                accelerator=accelerator, progress=progress, desc=desc)

    train = features(data.train, "LP-FT probe: train features")
    if len(train) == 0:
        raise DataError("model.head_init: probe needs a non-empty train split")
    val = features(data.eval, "LP-FT probe: eval features") if getattr(data, "eval", None) is not None else None
    if val is not None and len(val) == 0:
        val = None
    # the probe's own rule without a test split: C chosen on a stratified slice of train, refitted on all of
    # train, scored on eval (without an eval split the score is not kept)
    result, probe = run_linear_probe({"train": train, "eval": val if val is not None else train}, model.num_labels,
                                     config, seed, device=train.features.device)
    weight, bias = probe.folded()
    val_top1 = result.top1 if val is not None else None
    target = model.head_parameters()[0]
    load_linear_head(model, weight.to(target), bias.to(target))
    model.train()
    return ProbeHead(weight, bias, result.C, val_top1, time.perf_counter() - start)

