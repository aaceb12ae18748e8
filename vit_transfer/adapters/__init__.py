"""Parameter-efficient adapters via peft (LoRA, DoRA, rsLoRA and any peft tuner) over any ``TransferModel``.

The peft plumbing has neutral names (``AdapterHandle``, ``merge_adapter``, ...): it serves every peft tuner, LoRA
being one; ``lora.py`` adds only LoRA's settings and target resolution."""

from .lora import LoraSettings, apply_lora, resolve_target_modules
from .peft_adapter import (AdapterHandle, adapter_handle, apply_peft_config, count_parameters, load_adapter,
                           merge_adapter, save_adapter)

__all__ = ["AdapterHandle", "LoraSettings", "adapter_handle", "apply_lora", "apply_peft_config", "count_parameters",
           "load_adapter", "merge_adapter", "resolve_target_modules", "save_adapter"]
