"""Exponential moving average of the trainable weights, evaluated and saved in their place."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


class WeightEma:
    """``ema = decay * ema + (1 - decay) * weight`` after every optimiser step, in float32.

    Only trainable parameters are tracked (frozen ones never change), so LoRA and head-only runs
    pay for the few weights they train. ``state_dict``/``load_state_dict`` make it checkpointable
    with ``accelerator.register_for_checkpointing``.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().float().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.params.items():
            self.shadow[name].lerp_(param.detach().float(), 1.0 - self.decay)

    @contextmanager
    def swapped_in(self):
        """Temporarily put the averaged weights into the model (for evaluation and saving)."""
        backup = {n: p.detach().clone() for n, p in self.params.items()}
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(self.shadow[name].to(param.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(backup[name])

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for name, param in self.params.items():
            param.copy_(self.shadow[name].to(param.dtype))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {n: t.cpu() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}...: the checkpoint belongs to another model")
        self.decay = float(state["decay"])
        for name, tensor in state["shadow"].items():
            if name in self.shadow:
                self.shadow[name].copy_(tensor)
