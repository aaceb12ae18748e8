"""Capture every block's attention probabilities from a ``TransferModel``, HF or timm, LoRA-wrapped or not.

Fused kernels (SDPA) never form the attention matrix, so capture switches the model to eager attention
for the forward pass and restores the model's own setting afterwards, whatever it was. The maps are read
by forward hooks on the sites the model names (``TransferModel.attention_sites``) while the ordinary
``model(pixel_values)`` runs, so whatever input the model's forward accepts works here too.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from ..caller_state import eval_mode


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """Eager attention inside the block; the model's previous kernel setting is restored on exit."""
    if model.ecosystem == "hf":
        native = model.model
        before = native.config._attn_implementation
        native.set_attn_implementation("eager")
        try:
            yield
        finally:
            native.set_attn_implementation(before)
        return
    flags = {m: m.fused_attn for m in model.model.modules() if hasattr(m, "fused_attn")}
    for module in flags:
        module.fused_attn = False
    try:
        yield
    finally:
        for module, fused in flags.items():
            module.fused_attn = fused


def attention_state(model) -> object:
    """The model's attention-kernel setting, comparable with ``==`` (what ``eager_attention`` restores)."""
    if model.ecosystem == "hf":
        return model.model.config._attn_implementation
    return tuple(m.fused_attn for m in model.model.modules() if hasattr(m, "fused_attn"))


@torch.no_grad()
def capture_attention(model: nn.Module, pixel_values: torch.Tensor,
                      consume: "Callable[[int, torch.Tensor], None] | None" = None) -> list[torch.Tensor]:
    """``(B, heads, N, N)`` float32 attention probabilities of each block, oldest first.

    ``N`` counts every token: prefix tokens (class, distillation, registers) first, then the patch grid in
    row-major order. The model runs in eval mode (no dropout) and goes back to its own mode after.
    With ``consume``, each block's map goes to ``consume(block, map)`` as the forward pass makes it and is
    not kept (a ViT-L at 384 px holds about 0.5 GB of maps per image); the list returned is then empty.
    """
    sites = model.attention_sites()
    maps: list[list[torch.Tensor]] = [[] for _ in sites]

    def recorder(index, read):
        def hook(module, args, output):
            attention = read(output).detach().float()
            if consume is None:
                maps[index].append(attention)
            else:
                consume(index, attention)
                maps[index].append(None)
        return hook

    handles = [module.register_forward_hook(recorder(i, read)) for i, (module, read) in enumerate(sites)]
    try:
        with eval_mode(model), eager_attention(model):
            model(pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, found in enumerate(maps) if len(found) != 1]
    if missing:
        raise RuntimeError(f"no attention map was recorded for block(s) {missing} of {type(model.model).__name__}")
    return [] if consume is not None else [found[0] for found in maps]
