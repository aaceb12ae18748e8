"""Recipe sections shared by every command (``model:``); commands add their own sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..models.scratch import ArchitectureConfig


@dataclass
class ModelConfig:
    """Which pretrained ViT to start from and how to adapt its geometry and head (see ``load_vit``)."""

    source: str = "vit-transfer/fashion-vit-tiny"  # or "scratch": a random ViT built from `scratch`
    ecosystem: Literal["hf", "timm"] | None = None
    architecture: str | None = None  # timm architecture for a bare weights file
    image_size: int | list[int] | None = None  # None keeps the checkpoint's size
    patch_size: int | None = None
    interpolation: str = "bicubic"  # bicubic | bilinear | nearest | transformers | timm | torchvision | big_vision
    head: Literal["linear", "mlp"] = "linear"
    pooling: Literal["cls", "mean", "cls+mean"] | None = None
    # the head reads the pooled features of the last N blocks, concatenated (DINOv2's linear evaluation reads 4);
    # with head_init: probe the fine-tune starts from that probe. Not a head the stock loaders express (load_vit is).
    # null: 1, or the checkpoint's own when its head is reused (reuse_matching_head), as pooling: null does
    head_last_n: int | None = None
    head_hidden_dim: int | None = None
    head_dropout: float = 0.0
    head_init: Literal["zeros", "trunc_normal", "probe"] = "zeros"  # probe (training only): LP-FT, the fitted linear probe
    reuse_matching_head: bool = True  # a checkpoint already trained on exactly these labels keeps its head
    pretrained: bool = True  # False: same architecture, random weights (the control run)
    # auto (or null): eager on the CPU for sequences up to 256 tokens, where it measured faster, else sdpa
    attention: Literal["auto", "sdpa", "eager"] | None = "auto"
    gradient_checkpointing: bool = False  # recompute block activations in backward: less memory, ~1/3 more compute
    drop_path_rate: float = 0.0  # stochastic depth of the last block, linearly less before (timm, HF Dinov2)
    patch_drop_rate: float = 0.0  # timm only: drop this share of patch tokens per training step (speed)
    scratch: ArchitectureConfig = field(default_factory=ArchitectureConfig)  # used when source == "scratch"
