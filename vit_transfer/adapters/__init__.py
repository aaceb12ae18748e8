"""Parameter-efficient adapters (LoRA via peft) over any ``TransferModel``."""

from .lora import LoraHandle, LoraSettings, apply_lora, load_adapter, lora_handle, merge_lora, resolve_target_modules, save_adapter

__all__ = ["LoraHandle", "LoraSettings", "apply_lora", "load_adapter", "lora_handle", "merge_lora",
           "resolve_target_modules", "save_adapter"]
