"""``method: bitfit`` (Ben Zaken et al. 2022): every bias term plus the head trains, nothing else.

"Every bias" is every parameter named ``bias`` (attention and MLP Linears, LayerNorms, the patch
embedding), as the V-PETL / NOAH ViT code counts BitFit. The weights keep their layout, so the export
is a plain model the stock loaders read.
"""

from __future__ import annotations

from .base import Method, head_parameter_ids


class BitFit(Method):
    name = "bitfit"
    title = "BitFit (biases + head)"

    def select(self, model):
        head = head_parameter_ids(model)
        return lambda name, p: id(p) in head or name.rsplit(".", 1)[-1] == "bias"
