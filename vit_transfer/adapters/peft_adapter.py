"""Any peft tuner on a ``TransferModel``: wrap the native module in place, count, save, load, merge.

``get_peft_model`` injects the tuner layers into the native module *in place*, so the ``TransferModel``
wrapper keeps working unchanged on top (its forward, custom heads and pooling included); the
``PeftModel`` is kept beside it, in an ``AdapterHandle``, for saving the adapter and for merging. The new
head goes into ``modules_to_save``: left out, it would be frozen at its zero init during training and
reload random from the adapter (the most reported peft pitfall). LoRA (``lora.py``) and the generic
``method: peft`` both go through here.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

# peft keeps the frozen original of every ``modules_to_save`` module next to its trained copy (peft names it in
# code, not in a constant it exports)
PEFT_ORIGINAL_MARKER = ".original_module."


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameters of the model as it runs, each tensor counted once.

    peft's ``get_nb_trainable_parameters`` also counts the frozen ``original_module`` copy that
    ``modules_to_save`` keeps of the head, so its total (and ``trainable_percent``) counts the head twice;
    here that copy is left out: the total is the base model plus the tuner's own weights.
    """
    trainable = total = 0
    for name, p in model.named_parameters():
        if PEFT_ORIGINAL_MARKER in f".{name}.":
            continue
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


@dataclass
class AdapterHandle:
    """What ``apply_peft_config`` made: the PeftModel (sharing weights with ``model.model``) and its counts."""

    peft_model: nn.Module
    target_modules: list[str]
    modules_to_save: list[str]
    trainable_parameters: int
    total_parameters: int
    trainable_names: list[str] = field(default_factory=list)

    @property
    def peft_type(self) -> str:
        return str(getattr(self.peft_model.peft_config["default"].peft_type, "value", "LORA"))

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_parameters / max(1, self.total_parameters)

    @property
    def description(self) -> str:
        """What was adapted: ``LoRA on 4 modules (q_proj, v_proj) + head ['classifier']``."""
        leaves = ", ".join(sorted({t.rsplit(".", 1)[-1] for t in self.target_modules}))
        name = "LoRA" if self.peft_type == "LORA" else self.peft_type
        return f"{name} on {len(self.target_modules)} modules ({leaves}) + head {self.modules_to_save}"

    def summary(self) -> str:
        return (f"{self.description}: {self.trainable_parameters:,} trainable of "
                f"{self.total_parameters:,} parameters ({self.trainable_percent:.2f}%)")


@contextmanager
def peft_wrapping():
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model: not ours to warn of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def apply_peft_config(model, config) -> AdapterHandle:
    """Wrap ``model.model`` with peft ``config`` in place; only the tuner's weights + ``modules_to_save`` train."""
    from peft import get_peft_model

    with peft_wrapping():
        peft_model = get_peft_model(model.model, config)
    peft_model.peft_config["default"].base_model_name_or_path = model.source or None
    handle = _handle(model, peft_model)
    object.__setattr__(model, "_lora", handle)  # not a submodule: the weights are already registered once
    return handle


def _handle(model, peft_model) -> AdapterHandle:
    cfg = peft_model.peft_config["default"]
    targets = cfg.target_modules
    targets = sorted(targets) if targets is not None and not isinstance(targets, str) else [t for t in [targets] if t]
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    return AdapterHandle(peft_model, targets, list(cfg.modules_to_save or []), *count_parameters(model), trainable_names)


def adapter_handle(model) -> AdapterHandle | None:
    return getattr(model, "_lora", None)


def save_adapter(model, output_dir: "str | Path") -> Path:
    """The adapter alone (``adapter_config.json`` + ``adapter_model.safetensors``), head included."""
    handle = adapter_handle(model)
    if handle is None:
        raise ValueError("the model has no peft adapter (apply_lora / apply_peft_config was not called)")
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


def merge_adapter(model) -> None:
    """Fold the adapter into the weights and drop peft's wrappers: ``model`` becomes a plain model again.

    Raises peft's own error for a tuner that cannot merge."""
    handle = adapter_handle(model)
    if handle is None:
        raise ValueError("the model has no peft adapter (apply_lora / apply_peft_config was not called)")
    model.model = handle.peft_model.merge_and_unload()  # the native module, unwrapped in place
    object.__delattr__(model, "_lora")


def load_adapter(model, adapter_dir: "str | Path", is_trainable: bool = False) -> AdapterHandle:
    """Put a saved adapter (and its head) on ``model``, a ``TransferModel`` already at the run's size and labels."""
    from peft import PeftModel

    with peft_wrapping():
        peft_model = PeftModel.from_pretrained(model.model, str(adapter_dir), is_trainable=is_trainable)
    handle = _handle(model, peft_model)
    object.__setattr__(model, "_lora", handle)
    return handle
