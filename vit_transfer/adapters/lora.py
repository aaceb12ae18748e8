"""LoRA through peft (DoRA and rsLoRA included), for transformers and timm ViTs behind one ``TransferModel``.

The peft plumbing (wrapping in place, the head in ``modules_to_save``, save / load / merge) is shared
with every other peft tuner in ``peft_adapter.py``; this module adds LoRA's settings and the target
resolution that the other tuners reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from .peft_adapter import AdapterHandle, apply_peft_config


@dataclass
class LoraSettings:
    """``lora:`` recipe section (used when ``method: lora``); ``apply_lora`` turns it into peft's ``LoraConfig``."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # leaf names ([q_proj, v_proj]) or [all-linear]; null: the model's default
    merge: bool = False  # also save a merged plain model to OUTPUT_DIR/model (loads without peft)
    bias: str = "none"  # none | all | lora_only
    use_dora: bool = False  # DoRA (Liu et al. 2024): magnitude + direction; merges like LoRA
    use_rslora: bool = False  # rsLoRA (Kalajdzievski 2023): scale alpha / sqrt(r) instead of alpha / r

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be a positive integer, got {self.r}")


def resolve_target_modules(model, targets: list[str] | None, key: str = "lora.target_modules") -> list[str]:
    """Full names of the ``nn.Linear`` modules to adapt, never inside the head.

    Leaf names are matched against the native module; ``all-linear`` means every Linear outside the
    head. Resolving to full names keeps ``proj`` (timm) from also catching ``patch_embed.proj``.
    """
    native = model.model
    heads = model.head_module_names()
    leaves = list(targets) if targets else model.default_lora_targets()
    linear = {name: m for name, m in native.named_modules() if isinstance(m, nn.Linear)
              and not any(name == h or name.startswith(h + ".") for h in heads)}
    if leaves == ["all-linear"]:
        chosen = sorted(linear)
    else:
        chosen = sorted(n for n in linear if n.rsplit(".", 1)[-1] in leaves or n in leaves)
        missing = [t for t in leaves if not any(n.rsplit(".", 1)[-1] == t or n == t for n in chosen)]
        if missing:
            available = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise ConfigError(
                f"{key}: {missing} match no Linear layer of this {model.ecosystem} model; "
                f"available leaf names: {available}"
            )
    if not chosen:
        raise ConfigError(f"{key} selects no Linear layer")
    return chosen


def apply_lora(model, cfg: LoraSettings) -> AdapterHandle:
    """Add LoRA adapters to ``model`` (a ``TransferModel``) in place; only adapters + head stay trainable."""
    from peft import LoraConfig

    targets = resolve_target_modules(model, cfg.target_modules)
    return apply_peft_config(model, LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias=cfg.bias, target_modules=targets,
        modules_to_save=model.head_module_names(), use_dora=cfg.use_dora, use_rslora=cfg.use_rslora))


__all__ = ["LoraSettings", "apply_lora", "resolve_target_modules"]
