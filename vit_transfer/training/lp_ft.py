"""``model.head_init: probe``: LP-FT (Kumar et al. 2022), a fine-tune that starts from the fitted linear probe.

A zero (or random) head sends large, uninformative gradients into the pretrained features during the
first steps, which then drift away from what made them good; starting from the probe's head, the
fine-tune begins at the probe's accuracy and its gradients refine instead of repair. The probe is the
library's own (``vit_transfer.probe``) on the head's pooling of the last ``model.head_last_n`` blocks, fed by
the run's own eval transform and precision: frozen features of the train split, C chosen on the validation
split, fitted on train only (validation stays out of every fit: keep-best chooses on it too), so the run's
step-0 evaluation is the probe's validation accuracy. Without a validation split, C is chosen on a stratified slice of train.
The standardisation is folded into the weights, which are loaded into the model's existing linear head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..errors import DataError
from ..precision import probe_precision


@dataclass
class ProbeHead:
    """The probe the fine-tune starts from: ``logits = features @ weight.T + bias`` on the head's pooling."""

    weight: torch.Tensor
    bias: torch.Tensor
    C: float
    val_top1: float | None  # on the validation split; None without one
    seconds: float
    selection_split: str = "eval"

    def metrics(self) -> dict:
        """What ``metrics.json`` records of it."""
        return {"probe_val_top1": self.val_top1, "probe_C": self.C, "probe_seconds": self.seconds,
                "probe_selection_split": self.selection_split}


def init_head_from_probe(model, data, *, batch_size: int, precision: str = "no", num_workers: int = 0,
                         seed: int = 0, accelerator=None, progress: bool = True, transform=None) -> ProbeHead:
    """Fit the linear probe on ``model``'s frozen features of ``data.train`` and load it into the head.

    ``transform`` is the run's eval transform (default: the model's); ``precision`` the run's
    ``train.precision``. Call it before the method wraps the model (peft copies the head into
    ``modules_to_save`` when it wraps).
    """
    from ..data import build_transform
    from ..probe import ProbeConfig, extract_features, load_linear_head
    from ..probe.run import run_linear_probe

    start = time.perf_counter()
    config = ProbeConfig(fewshot=False, cache=False)
    pooling, last_n = model.head_spec.pooling, model.head_spec.last_n  # model.pooling, model.head_last_n
    transform = transform or build_transform(model.preprocessing, train=False, normalize=False)

    def features(split, desc):
        return extract_features(model, split, transform, pooling=pooling, last_n=last_n, batch_size=batch_size,
                                precision=probe_precision(precision), num_workers=num_workers,
                                accelerator=accelerator, progress=progress, desc=desc)

    train = features(data.train, "LP-FT probe: train features")
    if len(train) == 0:
        raise DataError("model.head_init: probe needs a non-empty train split")
    val = features(data.eval, "LP-FT probe: validation features") if getattr(data, "eval", None) is not None else None
    if val is not None and len(val) == 0:
        val = None
    # with a validation split: C chosen and the probe scored there, fitted on train alone; without one, the
    # probe's own rule (C on a stratified slice of train)
    result, probe = run_linear_probe({"train": train, "eval": val if val is not None else train}, model.num_labels,
                                     config, seed, device=train.features.device, choose_on_eval=val is not None)
    weight, bias = probe.folded()
    target = model.head_parameters()[0]
    load_linear_head(model, weight.to(target), bias.to(target))
    model.train()
    return ProbeHead(weight, bias, result.C, result.top1 if val is not None else None,
                     time.perf_counter() - start, result.selection_split)
