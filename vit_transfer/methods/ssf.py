"""``method: ssf`` (Lian et al. 2022): a per-channel scale and shift after every backbone linear and norm
layer, plus the head. ``adapters/ssf.py`` holds the layers; the export folds them into the weights, so
``OUTPUT_DIR/model`` is a plain ViT with no inference cost that the stock loaders read.
"""

from __future__ import annotations

from pathlib import Path

from ..adapters.ssf import apply_ssf, merge_ssf
from ..adapters.peft_adapter import count_parameters
from .base import Method, PreparedMethod, save_plain_model


class SSF(Method):
    name = "ssf"
    title = "SSF (scale-and-shift features, merged into the weights)"

    def prepare(self, model, options=None) -> PreparedMethod:
        layers = apply_ssf(model)
        return PreparedMethod(self.name, *count_parameters(model), f"SSF on {len(layers)} linear and norm layers + head")

    def export(self, model, prepared: PreparedMethod, output_dir: Path, options=None) -> None:
        merge_ssf(model)  # from here on the model is the stock architecture
        save_plain_model(model, output_dir)

    def plain_copy(self, model):
        import copy

        plain = copy.deepcopy(model)
        merge_ssf(plain)
        return plain
