"""``method: full``: every weight trains (the ViT paper's fine-tuning); export: the plain model."""

from __future__ import annotations

from .base import Method


class FullFineTuning(Method):
    name = "full"
    title = "full fine-tuning"

    def select(self, model):
        return lambda name, p: True
