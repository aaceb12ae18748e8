"""Raw ``uint8`` pixels to the model's input, in batch, on whatever device the batch is on.

Why: loader workers that normalise on the host ship 4-byte floats to the accelerator and spend CPU
on per-image arithmetic; timm's ``PrefetchLoader`` moves normalisation to the GPU for this reason.
Here the loaders yield ``uint8`` and a ``TransferModel`` turns them into its input itself: scale to
[0, 1], resize to the model's size when the batch is smaller or larger (datasets stored far below the
training size, such as CIFAR at 384 px, travel at 32 px), then the mean/std normalisation. Float input
is taken as already prepared and passes through untouched.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# the modes torchvision resizes tensors with; PIL-only filters fall back to bicubic, their nearest relative
TENSOR_INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def normalize_uint8(
    pixels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: "tuple[int, int] | None" = None,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """``(B, C, H, W)`` uint8 -> float32 ``(B, C, *size)`` normalised with ``mean``/``std``.

    The resize (antialiased, as the host transforms do) runs on the float values and is clipped back to
    [0, 1], so no rounding to 8 bits happens between resize and normalisation.
    """
    if pixels.dtype != torch.uint8:
        raise TypeError(f"normalize_uint8 takes uint8 pixels, got {pixels.dtype}")
    values = TF.to_dtype(pixels, torch.float32, scale=True)
    if size is not None and tuple(values.shape[-2:]) != tuple(size):
        mode = TENSOR_INTERPOLATIONS.get(str(interpolation).lower(), InterpolationMode.BICUBIC)
        values = TF.resize(values, list(size), interpolation=mode, antialias=mode != InterpolationMode.NEAREST_EXACT)
        values = values.clamp_(0.0, 1.0)
    return TF.normalize(values, mean=list(mean), std=list(std))
