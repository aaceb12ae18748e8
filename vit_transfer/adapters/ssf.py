"""SSF: scale and shift the features after every linear and norm layer (Lian et al., NeurIPS 2022).

Each ``nn.Linear`` and ``nn.LayerNorm`` of the backbone gets a per-channel ``scale`` and ``shift``
(``y = module(x) * scale + shift``); only those and the head train. Both are affine in the layer's
output, so ``merge_ssf`` folds them into the layer's own weight and bias — ``W' = scale[:, None] * W``,
``b' = scale * b + shift`` — and the model becomes a plain ViT again: the exported checkpoint is a stock
transformers/timm model with no inference cost. A layer without a bias (``qkv_bias=False``) gets a scale
only, so the merged model keeps the stock architecture. Initialisation follows the paper: scale
``N(1, 0.02)``, shift ``N(0, 0.02)``. peft has no SSF, hence this module.
"""

from __future__ import annotations

import torch
from torch import nn


class ScaleShift(nn.Module):
    """``module(x) * scale + shift`` over the last (channel) dimension."""

    def __init__(self, module: nn.Module, init_std: float = 0.02):
        super().__init__()
        self.module = module
        dim = module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[-1]
        self.scale = nn.Parameter(torch.empty(dim, device=module.weight.device).normal_(1.0, init_std))
        self.shift = (nn.Parameter(torch.empty(dim, device=module.weight.device).normal_(0.0, init_std))
                      if module.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x) * self.scale
        return y + self.shift if self.shift is not None else y

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """The wrapped layer with scale and shift folded into its weight and bias."""
        module = self.module
        if isinstance(module, nn.Linear):
            module.weight.mul_(self.scale[:, None].to(module.weight.dtype))
        else:
            module.weight.mul_(self.scale.to(module.weight.dtype))
        if module.bias is not None:
            module.bias.mul_(self.scale).add_(self.shift)
        return module


def _mergeable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.LayerNorm) and module.elementwise_affine and module.weight is not None


def apply_ssf(model, init_std: float = 0.02) -> list[str]:
    """Wrap every backbone Linear and LayerNorm of ``model`` (a ``TransferModel``) in a ``ScaleShift``, in place;
    freeze the rest but the head. Returns the wrapped layers' names."""
    native, heads = model.model, model.head_module_names()

    def in_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in heads)

    names = [n for n, m in native.named_modules() if n and _mergeable(m) and not in_head(n)]
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = native.get_submodule(parent_name) if parent_name else native
        setattr(parent, leaf, ScaleShift(getattr(parent, leaf), init_std))
    for p in model.head_parameters():
        p.requires_grad_(True)
    return names


def merge_ssf(model) -> int:
    """Fold every ``ScaleShift`` of ``model`` into its layer and remove the wrappers; returns how many."""
    native = model.model
    wrapped = [n for n, m in native.named_modules() if isinstance(m, ScaleShift)]
    for name in wrapped:
        parent_name, _, leaf = name.rpartition(".")
        parent = native.get_submodule(parent_name) if parent_name else native
        setattr(parent, leaf, getattr(parent, leaf).merged())
    return len(wrapped)
