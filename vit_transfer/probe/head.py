"""Turn a fitted probe into the backbone's classifier, so the probe ships as a ready model.

The probe's standardisation is folded into the weights (``W / std``, ``b - W @ (mean / std)``), which
then replace the model's head through ``TransferModel.set_head``; ``model.save`` writes the native
layout and ``load_vit`` reloads a classifier whose logits equal the probe's. Only features of the
last block can be served this way (``last_n == 1``): the heads read one block's tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ..caller_state import eval_mode


def _last_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"no nn.Linear in head module {type(module).__name__}")
    return linears[-1]


def attach_linear_head(
    model,
    weight: torch.Tensor,
    bias: torch.Tensor,
    id2label: dict[int, str] | None = None,
    pooling: str = "cls",
) -> None:
    """Replace ``model``'s classifier by the linear map ``features @ weight.T + bias`` on ``pooling`` features.

    ``weight``/``bias`` act on raw (unstandardised) pooled features, e.g. ``LogisticRegression.folded()``.
    """
    model.set_head(int(weight.shape[0]), id2label, kind="linear", pooling=pooling, init="zeros")
    load_linear_head(model, weight, bias)


def load_linear_head(model, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Copy the linear map into ``model``'s existing linear head (its kind, pooling and dropout kept).

    LP-FT starts a fine-tune from the probe this way; ``attach_linear_head`` builds the head first."""
    heads = [_last_linear(model.model.get_submodule(name)) for name in model.head_module_names()]
    with torch.no_grad():
        if len(heads) == 1:
            heads[0].weight.copy_(weight)
            heads[0].bias.copy_(bias)
        else:
            # DeiT with a distillation token averages its two heads' logits: the class-token head
            # carries twice the probe, the distillation head is zero, and the average is the probe.
            heads[0].weight.copy_(2 * weight)
            heads[0].bias.copy_(2 * bias)
            for head in heads[1:]:
                head.weight.zero_()
                head.bias.zero_()


def head_agreement(model, pixel_values: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   pooling: str = "cls") -> float:
    """Largest |model logits - probe logits| on a batch, relative to the probe logits' scale.

    Catches a backbone whose classification path differs from ``forward_features`` (e.g. a timm
    model with attention pooling, ``global_pool="map"``), which would make the saved classifier
    disagree with the probe.
    """
    with eval_mode(model), torch.inference_mode():
        device = next(model.parameters()).device
        pixels = pixel_values.to(device)
        served = model(pixels).float()
        probe = model.forward_features(pixels, pooling=pooling).float() @ weight.to(device).T + bias.to(device)
    scale = probe.abs().max().clamp_min(1e-6)
    return float((served - probe).abs().max() / scale)
