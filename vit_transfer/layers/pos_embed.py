"""Resample absolute position embeddings to a new patch grid: timm's resampler, with named presets.

A ViT's position table holds ``num_prefix_tokens`` rows (class, distillation tokens) followed by
one row per patch in row-major order; only the patch rows are interpolated. Register tokens in
timm and DINOv2 have no entry in the table, so they need no care here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import resample_abs_pos_embed

from ..errors import ConfigError

# Codebases disagree on how to interpolate; these names reproduce each of them exactly.
INTERPOLATION_PRESETS: dict[str, dict] = {
    # transformers' ViTEmbeddings.interpolate_pos_encoding
    "transformers": dict(mode="bicubic", align_corners=False, antialias=False),
    # timm.layers.resample_abs_pos_embed defaults
    "timm": dict(mode="bicubic", align_corners=False, antialias=True),
    # torchvision's vit_b_16 interpolate_embeddings
    "torchvision": dict(mode="bicubic", align_corners=True, antialias=False),
    # the official ViT / big_vision code: scipy.ndimage.zoom(order=1)
    "big_vision": dict(mode="bilinear", align_corners=True, antialias=False),
}
MODES = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class Interpolation:
    """How to interpolate: a torch mode plus the two flags that make codebases disagree."""

    mode: str = "bicubic"
    align_corners: bool = False
    antialias: bool = False

    @classmethod
    def parse(cls, spec: "str | Interpolation | None", **overrides) -> "Interpolation":
        """Accept a mode (``bicubic``), a preset (``timm``) or an Interpolation; apply overrides."""
        if spec is None:
            spec = "bicubic"
        if isinstance(spec, Interpolation):
            base = dict(mode=spec.mode, align_corners=spec.align_corners, antialias=spec.antialias)
        elif spec in INTERPOLATION_PRESETS:
            base = dict(INTERPOLATION_PRESETS[spec])
        elif spec in MODES:
            base = dict(mode=spec, align_corners=False, antialias=False)
        else:
            raise ConfigError(
                f"unknown interpolation {spec!r}: use one of {MODES} or a preset {tuple(INTERPOLATION_PRESETS)}"
            )
        base.update({k: v for k, v in overrides.items() if v is not None})
        if base["mode"] == "nearest":
            base["align_corners"] = None  # torch rejects align_corners for nearest
            base["antialias"] = False
        return cls(**base)


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: "str | Interpolation" = "bicubic",
) -> torch.Tensor:
    """Return ``pos_embed`` (``(1, prefix + H*W, D)``) resampled to ``new_grid`` = (H', W').

    timm's ``resample_abs_pos_embed`` does the work (in float32, cast back to the input dtype); this adds
    the named presets and errors that say what does not fit (timm guesses a square grid and fails in a reshape).
    """
    interp = Interpolation.parse(interpolation)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"expected a (1, tokens, dim) position table, got {tuple(pos_embed.shape)}")
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(f"cannot infer a square grid from {num_patches} patch positions; pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != num_patches:
        raise ValueError(f"grid {tuple(old_grid)} does not match {num_patches} patch positions")
    return resample_abs_pos_embed(
        pos_embed, [int(n) for n in new_grid], [int(n) for n in old_grid], num_prefix_tokens=num_prefix_tokens,
        interpolation=interp.mode, antialias=interp.antialias, align_corners=interp.align_corners,
    )
