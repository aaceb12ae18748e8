"""LoRA through peft, for transformers and timm ViTs behind the same ``TransferModel``.

``get_peft_model`` injects the low-rank layers into the native module *in place*, so the
``TransferModel`` wrapper keeps working unchanged on top (its forward, custom heads and pooling
included); the ``PeftModel`` is kept beside it, in a ``LoraHandle``, for saving the adapter and for
merging. The new head goes into ``modules_to_save``: left out, it would be frozen at its zero init
during training and reload random from the adapter (the most reported peft pitfall).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import ConfigError


@dataclass
class LoraSettings:
    """``lora:`` recipe section (used when ``method: lora``); ``apply_lora`` turns it into peft's ``LoraConfig``."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None  # leaf names ([q_proj, v_proj]) or [all-linear]; null: the model's default
    merge: bool = False  # also save a merged plain model to OUTPUT_DIR/model (loads without peft)
    bias: str = "none"  # none | all | lora_only

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be a positive integer, got {self.r}")


@dataclass
class LoraHandle:
    """What ``apply_lora`` made: the PeftModel (sharing weights with ``model.model``) and peft's parameter count."""

    peft_model: nn.Module
    target_modules: list[str]
    modules_to_save: list[str]
    trainable_parameters: int
    total_parameters: int
    trainable_names: list[str] = field(default_factory=list)

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_parameters / max(1, self.total_parameters)

    def summary(self) -> str:
        leaves = ", ".join(sorted({t.rsplit(".", 1)[-1] for t in self.target_modules}))
        return (f"LoRA on {len(self.target_modules)} modules ({leaves}) "
                f"+ head {self.modules_to_save}: {self.trainable_parameters:,} trainable of "
                f"{self.total_parameters:,} parameters ({self.trainable_percent:.2f}%)")


def resolve_target_modules(model, targets: list[str] | None) -> list[str]:
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
                f"lora.target_modules: {missing} match no Linear layer of this {model.ecosystem} model; "
                f"available leaf names: {available}"
            )
    if not chosen:
        raise ConfigError("lora.target_modules selects no Linear layer")
    return chosen


@contextmanager
def _peft_wrapping():
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model: not ours to warn of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_lora(model, cfg: LoraSettings) -> LoraHandle:
    """Add LoRA adapters to ``model`` (a ``TransferModel``) in place; only adapters + head stay trainable."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_target_modules(model, cfg.target_modules)
    heads = model.head_module_names()
    with _peft_wrapping():
        peft_model = get_peft_model(model.model, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                    bias=cfg.bias, target_modules=targets, modules_to_save=heads))
    peft_model.peft_config["default"].base_model_name_or_path = model.source or None
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    handle = LoraHandle(peft_model, targets, heads, *peft_model.get_nb_trainable_parameters(), trainable)
    object.__setattr__(model, "_lora", handle)  # not a submodule: the weights are already registered once
    return handle


def lora_handle(model) -> LoraHandle | None:
    return getattr(model, "_lora", None)


def save_adapter(model, output_dir: "str | Path") -> Path:
    """The adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``), head included."""
    handle = lora_handle(model)
    if handle is None:
        raise ValueError("the model has no LoRA adapter (apply_lora was not called)")
    output_dir = Path(output_dir)
    # a ViT has no vocabulary to resize: "auto" would ask the Hub for the base model's config.json
    handle.peft_model.save_pretrained(str(output_dir), save_embedding_layers=False)
    # what a reader needs to rebuild the base at the same size and label set before loading the adapter
    info = {
        "base_model": model.source, "ecosystem": model.ecosystem, "image_size": list(model.image_size),
        "patch_size": list(model.patch_size), "num_labels": model.num_labels,
        "id2label": {str(k): v for k, v in model.id2label.items()}, "head": model.head_spec.to_dict(),
    }
    (output_dir / "vit_transfer_adapter.json").write_text(json.dumps(info, indent=2) + "\n")
    return output_dir


def merge_lora(model) -> None:
    """Fold the adapters into the weights and drop peft's wrappers: ``model`` becomes a plain model again."""
    handle = lora_handle(model)
    if handle is None:
        raise ValueError("the model has no LoRA adapter (apply_lora was not called)")
    model.model = handle.peft_model.merge_and_unload()  # the native module, unwrapped in place
    object.__delattr__(model, "_lora")


def load_adapter(model, adapter_dir: "str | Path", is_trainable: bool = False) -> LoraHandle:
    """Put a saved adapter (and its head) on ``model``, a ``TransferModel`` already at the run's size and labels."""
    from peft import PeftModel

    with _peft_wrapping():
        peft_model = PeftModel.from_pretrained(model.model, str(adapter_dir), is_trainable=is_trainable)
    cfg = peft_model.peft_config["default"]
    targets = sorted(cfg.target_modules) if not isinstance(cfg.target_modules, str) else [cfg.target_modules]
    handle = LoraHandle(peft_model, targets, list(cfg.modules_to_save or []), *peft_model.get_nb_trainable_parameters())
    object.__setattr__(model, "_lora", handle)
    return handle
