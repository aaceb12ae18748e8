"""Mean attention distance (ViT paper, Fig. 7): how far, in pixels, each head looks.

For query patch i, ``sum_j a_ij * d(i, j)`` with ``d`` the distance between patch centres in pixels
(grid distance times the patch size, per axis, so non-square grids and patches count right), averaged
over query patches (and then over images). Prefix tokens (class, distillation, registers) have no place
on the grid: they are dropped as queries and as keys, and each query's row is renormalised over the
patch keys, so a head that looks mostly at the class token reports where the rest of its weight goes.
"""

from __future__ import annotations

import torch


def patch_distances(grid: tuple[int, int], patch_size: tuple[int, int]) -> torch.Tensor:
    """``(P, P)`` pixel distances between the centres of the ``P = gh * gw`` patches, row-major."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    y = rows.flatten().double() * patch_size[0]
    x = cols.flatten().double() * patch_size[1]
    return torch.sqrt((y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2)


def uniform_attention_distance(grid: tuple[int, int], patch_size: tuple[int, int]) -> float:
    """The distance a head that attends to every patch equally reports: the mean pairwise patch distance."""
    return float(patch_distances(grid, patch_size).mean())


def patch_attention(attention: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """Patch-to-patch part of ``(..., N, N)`` attention, each row renormalised to sum to one over patch keys."""
    patches = attention[..., num_prefix_tokens:, num_prefix_tokens:]
    return patches / patches.sum(-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)


def mean_attention_distance(attention: torch.Tensor, grid: tuple[int, int], patch_size: tuple[int, int],
                            num_prefix_tokens: int) -> torch.Tensor:
    """``(B, heads)`` mean attention distance in pixels of one block's ``(B, heads, N, N)`` attention."""
    expected = num_prefix_tokens + grid[0] * grid[1]
    if attention.shape[-1] != expected or attention.shape[-2] != expected:
        raise ValueError(f"attention over {attention.shape[-1]} tokens does not fit {num_prefix_tokens} prefix "
                         f"token(s) + a {grid[0]}x{grid[1]} grid ({expected})")
    weights = patch_attention(attention.double(), num_prefix_tokens)
    distance = patch_distances(grid, patch_size).to(weights.device)
    return (weights * distance).sum(-1).mean(-1)


def model_attention_distance(attentions: "list[torch.Tensor]", model) -> torch.Tensor:
    """``(blocks, B, heads)`` for the captured maps of ``model`` (its grid, patch size and prefix count)."""
    return torch.stack([mean_attention_distance(a, model.grid_size, model.patch_size, model.num_prefix_tokens)
                        for a in attentions])
