"""vit-transfer: take a pretrained Vision Transformer from transformers or timm to a new task."""

from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ImageSizeError,
    NotAViTError,
    UnknownSourceError,
    VitTransferError,
)
from .layers import Interpolation, resample_patch_embed, resample_pos_embed
from .models import HeadSpec, Preprocessing, ResizeReport, TransferModel, load_vit

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "HeadSpec",
    "ImageSizeError",
    "Interpolation",
    "NotAViTError",
    "Preprocessing",
    "ResizeReport",
    "TransferModel",
    "UnknownSourceError",
    "VitTransferError",
    "__version__",
    "load_vit",
    "resample_patch_embed",
    "resample_pos_embed",
]
