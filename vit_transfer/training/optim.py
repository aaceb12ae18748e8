"""Optimiser construction: parameter groups for weight decay and layer-wise learning-rate decay."""

from __future__ import annotations

import functools
import re

import torch
from torch import nn

from ..errors import ConfigError
from .config import OptimConfig

# Parameters that are never weight-decayed besides biases and norm weights (all 1-D).
NO_DECAY_NAMES = ("pos_embed", "position_embeddings", "cls_token", "reg_token", "register_tokens", "mask_token",
                  "dist_token", "distillation_token", "relative_position_bias_table")
# Parameters of the patch / position embedding: layer 0 for layer-wise lr decay.
EMBEDDING_NAMES = ("embeddings.", "patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token", "dist_token")
BLOCK_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|blocks)\.(\d+)\.")


def num_blocks(names: list[str]) -> int:
    """Transformer blocks, read from parameter names (``encoder.layer.N`` in transformers, ``blocks.N`` in timm)."""
    found = [int(m.group(1)) for n in names if (m := BLOCK_INDEX.search(n))]
    return max(found) + 1 if found else 0


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for block i, ``num_layers + 1`` for the final norm and the head."""
    match = BLOCK_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    if any(key in name for key in EMBEDDING_NAMES):
        return 0
    return num_layers + 1


def _decays(name: str, param: torch.Tensor) -> bool:
    return param.ndim > 1 and not any(key in name for key in NO_DECAY_NAMES)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Trainable parameters split by (weight decay on/off, layer, head); each group has its own ``lr``.

    Layer ids are read from parameter names rather than timm's ``param_groups_layer_decay``, which needs
    a timm model's ``group_matcher``: transformers' ViTs have none, and one rule serves both ecosystems.
    ``optim.head_lr`` gives the new head its own rate (LP-FT: a probe-initialised head next to a gentle backbone).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("the model has no trainable parameters: check `method` (docs/methods.md)")
    head_ids = {id(p) for p in model.head_parameters()} if cfg.head_lr is not None and hasattr(model, "head_parameters") else set()
    depth = num_blocks([n for n, _ in named]) if cfg.layer_decay is not None else 0
    groups: dict[tuple[bool, int, bool], dict] = {}
    for name, param in named:
        decay = _decays(name, param) and cfg.weight_decay > 0
        layer = layer_id(name, depth) if cfg.layer_decay is not None else 0
        scale = cfg.layer_decay ** (depth + 1 - layer) if cfg.layer_decay is not None else 1.0
        head = id(param) in head_ids
        group = groups.setdefault((decay, layer, head), {
            "params": [], "names": [], "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": (cfg.head_lr if head else cfg.lr) * scale, "lr_scale": scale,
        })
        group["params"].append(param)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[1], k[2], k[0]))]


@functools.lru_cache(maxsize=None)
def fused_supported(device_type: str) -> bool:
    """Whether torch has fused optimizer kernels for this device type (CPU and CUDA in torch >= 2.4): asked of
    torch's own optimiser (one step on a one-element parameter; torch checks the device at the step), since torch
    keeps its list of such devices private."""
    try:
        probe = torch.zeros(1, device=device_type, requires_grad=True)
        probe.grad = torch.zeros_like(probe)
        torch.optim.SGD([probe], lr=0.0, fused=True).step()
    except (RuntimeError, ValueError, AssertionError):  # no kernel, or no such device here
        return False
    return True


def build_optimizer(model: nn.Module, cfg: OptimConfig, device_type: str = "cpu") -> torch.optim.Optimizer:
    """SGD with momentum (the ViT transfer protocol) or AdamW, over the model's trainable parameters.

    ``optim.fused`` (default) takes torch's fused kernel when the training device has one: one kernel
    for the whole step instead of one per tensor (measured faster on CPU: docs/training.md).
    """
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, cfg)]
    fused = {"fused": True} if cfg.fused and fused_supported(device_type) else {}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               **fused)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **fused)
    raise ConfigError(f"optim.name must be 'sgd' or 'adamw', got {cfg.name!r}")
