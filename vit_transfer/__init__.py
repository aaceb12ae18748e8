"""vit-transfer: take a pretrained Vision Transformer from transformers or timm to a new task.

Every public name but the errors is imported on first use: ``import vit_transfer`` (and so ``vit-transfer
--help``, which imports the package first) does not import torch, timm or transformers.
"""

from __future__ import annotations

import importlib

from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ImageSizeError,
    NotAViTError,
    UnknownSourceError,
    VitTransferError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY = {
    "Interpolation": "vit_transfer.layers",
    "resample_patch_embed": "vit_transfer.layers",
    "resample_pos_embed": "vit_transfer.layers",
    "HeadSpec": "vit_transfer.models",
    "Preprocessing": "vit_transfer.models",
    "ResizeReport": "vit_transfer.models",
    "TransferModel": "vit_transfer.models",
    "load_vit": "vit_transfer.models",
    "convert_vit": "vit_transfer.models.convert",
    "convert_checkpoint": "vit_transfer.models.convert",
    "load_vit_from_config": "vit_transfer.models.loading",
    "DataConfig": "vit_transfer.data",
    "AugmentConfig": "vit_transfer.data",
    "load_image_datasets": "vit_transfer.data",
    "build_transform": "vit_transfer.data",
    "make_dataloader": "vit_transfer.data",
    "TrainRecipe": "vit_transfer.training",
    "load_train_recipe": "vit_transfer.training",
    "train": "vit_transfer.training",
    "fit": "vit_transfer.training",
    "LoraSettings": "vit_transfer.adapters.lora",
    "apply_lora": "vit_transfer.adapters.lora",
    "METHODS": "vit_transfer.methods",
    "prepare_method": "vit_transfer.methods",
    "ProbeConfig": "vit_transfer.probe",
    "ProbeResult": "vit_transfer.probe",
    "FeatureCache": "vit_transfer.probe",
    "extract_features": "vit_transfer.probe",
    "probe_model": "vit_transfer.probe",
    "linear_probe": "vit_transfer.probe",
    "push_run": "vit_transfer.hub",
    "predict": "vit_transfer.inference",
    "evaluate": "vit_transfer.inference",
    "load_trained_model": "vit_transfer.inference",
    "PredictionResult": "vit_transfer.inference",
    "EvaluationResult": "vit_transfer.inference",
    "run_quickstart": "vit_transfer.quickstart",
    "inspect_model": "vit_transfer.diagnostics",
    "capture_attention": "vit_transfer.diagnostics",
    "attention_rollout": "vit_transfer.diagnostics",
    "mean_attention_distance": "vit_transfer.diagnostics",
    "pos_embed_similarity": "vit_transfer.diagnostics",
    "QuickstartConfig": "vit_transfer.quickstart",
    "auto": "vit_transfer.autoselect",
    "AutoSettings": "vit_transfer.autoselect",
    "AutoResult": "vit_transfer.autoselect",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vit_transfer' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ImageSizeError",
    "NotAViTError",
    "UnknownSourceError",
    "VitTransferError",
    "__version__",
    *_LAZY,
]
