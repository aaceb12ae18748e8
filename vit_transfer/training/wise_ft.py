"""``train.wise_ft``: WiSE-FT (Wortsman et al. 2022), the fine-tuned weights interpolated with the starting ones.

``theta(alpha) = (1 - alpha) * theta_start + alpha * theta_finetuned``: the start is the pretrained backbone
with the run's initial head (the probe's with LP-FT), the end the run's returned weights in the stock
architecture (adapters merged: ``Method.plain_copy``). The paper gains 0.8 to 3.3 points on seven transfer
sets at no inference cost; which alpha is best depends on the data, so it is chosen on the validation split
from ``train.wise_ft_alphas`` (0 and 1 included: never below either end there). The result is a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..selection import is_better


def interpolate_weights(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict:
    """``(1 - alpha) * start + alpha * end`` for every floating tensor (others, and keys only ``end`` has, from ``end``)."""
    out = {}
    for name, value in end.items():
        first = start.get(name)
        if first is None or not value.is_floating_point() or first.shape != value.shape:
            out[name] = value
        elif alpha == 1.0:
            out[name] = value.clone()
        elif alpha == 0.0:
            out[name] = first.to(value).clone()
        else:
            out[name] = torch.lerp(first.to(value), value, alpha)
    return out


@dataclass
class WiseFTChoice:
    """The alpha chosen on validation and every alpha's validation scores."""

    alpha: float
    scores: dict
    curve: list[dict] = field(default_factory=list)  # {"alpha", "top1", "top5", "loss"}

    def metrics(self) -> dict:
        return {"wise_ft_alpha": self.alpha, "wise_ft_curve": self.curve}


def choose_alpha(model: nn.Module, start: dict[str, torch.Tensor], alphas, score) -> WiseFTChoice:
    """Load each alpha's weights into ``model`` (its fine-tuned weights are the end), score it with
    ``score(model) -> {"top1", "loss", ...}``, and leave ``model`` at the best: highest top-1, then lowest
    loss, then the larger alpha (closer to the fine-tune)."""
    end = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best, curve = None, []
    for alpha in sorted({float(a) for a in alphas}, reverse=True):
        model.load_state_dict(interpolate_weights(start, end, alpha))
        scores = score(model)
        curve.append({"alpha": alpha, **{k: scores[k] for k in ("top1", "top5", "loss")}})
        if best is None or is_better(scores, best.scores):  # keep-best's rule; ties keep the larger alpha
            best = WiseFTChoice(alpha, dict(scores))
    model.load_state_dict(interpolate_weights(start, end, best.alpha))
    best.curve = sorted(curve, key=lambda c: c["alpha"])
    return best
