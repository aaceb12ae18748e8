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
    from ..probe.logistic import fit_logistic_regression, select_C, topk_accuracy
    from ..probe.run import stratified_holdout

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
    device = train.features.device
    keep, held = stratified_holdout(train.labels, config.val_fraction, seed)
    if len(held) == 0:
        raise DataError("model.head_init: probe holds out part of train to choose C, and the train split is too small")
    search = select_C(train.features[keep], train.labels[keep], train.features[held], train.labels[held],
                      model.num_labels, exponents=tuple(config.c_exponents), steps=config.c_steps,
                      refine_steps=config.c_refine_steps, max_iter=config.max_iter, device=device)
    probe = fit_logistic_regression(train.features, train.labels, search.best_C, model.num_labels,
                                    max_iter=config.max_iter, device=device)
    weight, bias = probe.folded()
    val_top1 = None
    if getattr(data, "eval", None) is not None:
        val = features(data.eval, "LP-FT probe: eval features")
        if len(val):
            val_top1 = topk_accuracy(probe.logits(val.features), val.labels, 1)
    target = model.head_parameters()[0]
    load_linear_head(model, weight.to(target), bias.to(target))
    model.train()
    return ProbeHead(weight, bias, search.best_C, val_top1, time.perf_counter() - start)

