"""Small building blocks: position-embedding and patch-embedding resampling, heads and pooling."""

from .heads import POOLINGS, build_head, pool_tokens, pooled_dim
from .patch_embed import resample_patch_embed
from .pos_embed import INTERPOLATION_PRESETS, Interpolation, resample_pos_embed

__all__ = [
    "INTERPOLATION_PRESETS",
    "Interpolation",
    "POOLINGS",
    "build_head",
    "pool_tokens",
    "pooled_dim",
    "resample_patch_embed",
    "resample_pos_embed",
]
