"""Parameter-efficient adapters via peft (LoRA, DoRA, rsLoRA and any peft tuner) over any ``TransferModel``."""

from .lora import LoraHandle, LoraSettings, apply_lora, load_adapter, lora_handle, merge_lora, resolve_target_modules, save_adapter
from .peft_adapter import AdapterHandle, adapter_handle, apply_peft_config, count_parameters, merge_adapter

__all__ = ["AdapterHandle", "LoraHandle", "LoraSettings", "adapter_handle", "apply_lora", "apply_peft_config",
           "count_parameters", "load_adapter", "lora_handle", "merge_adapter", "merge_lora", "resolve_target_modules",
           "save_adapter"]
