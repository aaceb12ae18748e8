"""Model assemblies: one ``TransferModel`` interface over transformers and timm ViTs."""

from .base import HeadSpec, Preprocessing, ResizeReport, TransferModel
from .convert import convert_checkpoint, convert_vit
from .hf_vit import HFViT
from .loading import load_vit, load_vit_from_config
from .timm_vit import TimmViT

__all__ = [
    "convert_checkpoint",
    "convert_vit","HFViT", "HeadSpec", "Preprocessing", "ResizeReport", "TimmViT", "TransferModel", "load_vit", "load_vit_from_config"]
