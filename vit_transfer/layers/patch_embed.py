"""Change a ViT's patch size by resampling the patch-embedding kernel (FlexiViT's PI-resize).

Use it when a new resolution would make the sequence too long (or too short) at the old patch
size: a 224 model fine-tuned at 448 with patch 16 sees 4x the tokens; with patch 32 it keeps the
same grid. timm implements the pseudo-inverse resize; this module adapts it to Conv2d kernels of
either ecosystem.
"""

from __future__ import annotations

import torch
from timm.layers import resample_patch_embed as _timm_resample_patch_embed


def resample_patch_embed(
    weight: torch.Tensor,
    new_patch_size: tuple[int, int],
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a ``(D, C, ph, pw)`` patch kernel to ``new_patch_size`` so that tokens keep their meaning."""
    new_patch_size = (int(new_patch_size[0]), int(new_patch_size[1]))
    if tuple(weight.shape[-2:]) == new_patch_size:
        return weight
    dtype = weight.dtype
    out = _timm_resample_patch_embed(
        weight.float(), list(new_patch_size), interpolation=interpolation, antialias=antialias, verbose=False
    )
    return out.to(dtype)
