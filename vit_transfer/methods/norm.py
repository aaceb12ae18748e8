"""``method: norm``: the affine weight and bias of every LayerNorm plus the head train (norm tuning).

The norms are under 0.05% of a ViT-B's weights (25 LayerNorms x 2 x 768) yet re-centre and re-scale
every block's input; tuning them alone is a cheap baseline next to BitFit (peft ships the same idea for
language models as ``LN_TUNING``). The weights keep their layout, so the export is a plain model.
"""

from __future__ import annotations

from torch import nn

from .base import Method, head_parameter_ids

NORM_TYPES = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None)


class NormTuning(Method):
    name = "norm"
    title = "LayerNorm tuning (norm affine + head)"

    def select(self, model):
        chosen = head_parameter_ids(model)
        for module in model.modules():
            if isinstance(module, NORM_TYPES):
                chosen |= {id(p) for p in module.parameters(recurse=False)}
        return lambda name, p: id(p) in chosen
