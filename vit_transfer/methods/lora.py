"""``method: lora`` (with ``lora.use_dora`` / ``lora.use_rslora``): peft's LoRA on the attention projections.

Export: ``OUTPUT_DIR/adapter`` (``PeftModel.from_pretrained`` reads it, head included) and, with
``lora.merge: true``, the merged plain model in ``OUTPUT_DIR/model``.
"""

from __future__ import annotations

from pathlib import Path

from ..adapters.lora import LoraSettings, apply_lora
from .base import Method, PreparedMethod, export_adapter, merged_copy


class LoRA(Method):
    name = "lora"
    title = "LoRA (peft)"
    writes_adapter = True
    options_section, options_type = "lora", LoraSettings
    peft_type = "LORA"

    def card_title(self, adapter_config: dict) -> str:
        variants = [v for v, key in (("DoRA", "use_dora"), ("rsLoRA", "use_rslora")) if adapter_config.get(key)]
        return self.title + (f" ({', '.join(variants)})" if variants else "")

    def prepare(self, model, options=None) -> PreparedMethod:
        handle = apply_lora(model, options)
        variant = " + ".join(v for v, on in (("DoRA", options.use_dora), ("rsLoRA", options.use_rslora)) if on)
        description = handle.description + (f" ({variant})" if variant else "")
        return PreparedMethod(self.name, handle.trainable_parameters, handle.total_parameters, description, handle)

    def export(self, model, prepared: PreparedMethod, output_dir: Path, options=None) -> None:
        export_adapter(model, output_dir, merge=options.merge)

    def plain_copy(self, model):
        return merged_copy(model)
