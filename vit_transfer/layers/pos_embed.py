"""Resample absolute position embeddings to a new patch grid.

A ViT's position table holds ``num_prefix_tokens`` rows (class, distillation tokens) followed by
one row per patch in row-major order. Only the patch rows form a 2-D grid; they are reshaped to
``(1, dim, H, W)``, interpolated, and flattened back. Prefix rows are copied untouched.
Register tokens in timm and DINOv2 have no entry in the table, so they need no care here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
            raise ValueError(
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

    ``old_grid`` defaults to a square grid inferred from the table length. Interpolation is done in
    float32 (bicubic in half precision is inaccurate) and cast back to the input dtype.
    """
    interp = Interpolation.parse(interpolation)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"expected a (1, tokens, dim) position table, got {tuple(pos_embed.shape)}")
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                f"cannot infer a square grid from {num_patches} patch positions; pass old_grid"
            )
        old_grid = (side, side)
    old_grid = (int(old_grid[0]), int(old_grid[1]))
    new_grid = (int(new_grid[0]), int(new_grid[1]))
    if old_grid[0] * old_grid[1] != num_patches:
        raise ValueError(f"grid {old_grid} does not match {num_patches} patch positions")
    if new_grid == old_grid:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = pos_embed.shape[-1]
    dtype = pos_embed.dtype
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    kwargs = dict(size=new_grid, mode=interp.mode)
    if interp.mode != "nearest":
        kwargs.update(align_corners=interp.align_corners, antialias=interp.antialias)
    grid = F.interpolate(grid, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(dtype)
    return torch.cat([prefix, grid], dim=1)
