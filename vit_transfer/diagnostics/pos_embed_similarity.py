"""Position-embedding similarity (ViT paper, Fig. 7 centre): what the table learned, and what a resize kept.

Each patch's row of the table is compared by cosine similarity with every other patch's row, giving a
``(gh, gw, gh, gw)`` grid of grids (prefix rows are left out: they have no grid position). A learned
table shows row and column stripes and locality; the locality number puts that in one figure:
the mean similarity of 4-neighbour patches minus the mean over all other pairs. The resized table
comes from the project's own resampler (``layers.resample_pos_embed``, what ``TransferModel.resize`` uses).
"""

from __future__ import annotations

import torch

from ..layers import resample_pos_embed
from ..models.base import check_divisible, to_pair


def pos_embed_similarity(table: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """``(gh, gw, gh, gw)`` cosine similarity between the patch rows of a ``(1, prefix + P, D)`` table.

    A zero row (a model without position embedding) has similarity 0 to everything, itself included.
    """
    rows = table.reshape(-1, table.shape[-1])[num_prefix_tokens:].double()
    if rows.shape[0] != grid[0] * grid[1]:
        raise ValueError(f"{rows.shape[0]} patch rows do not fit a {grid[0]}x{grid[1]} grid")
    unit = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).reshape(grid[0], grid[1], grid[0], grid[1])


def neighbour_mask(grid: tuple[int, int]) -> torch.Tensor:
    """``(P, P)`` True where two patches share an edge (4-neighbourhood)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    r, c = rows.flatten(), cols.flatten()
    return ((r[:, None] - r[None, :]).abs() + (c[:, None] - c[None, :]).abs()) == 1


def locality(similarity: torch.Tensor) -> dict[str, float]:
    """Mean similarity of grid neighbours, of all other (non-self) pairs, and their difference."""
    grid = (similarity.shape[0], similarity.shape[1])
    flat = similarity.reshape(grid[0] * grid[1], -1)
    neighbours = neighbour_mask(grid)
    others = ~neighbours & ~torch.eye(flat.shape[0], dtype=torch.bool)
    near = float(flat[neighbours].mean()) if neighbours.any() else float("nan")
    far = float(flat[others].mean()) if others.any() else float("nan")
    return {"neighbours": near, "others": far, "locality": near - far}


def resized_table(model, image_size: "int | tuple[int, int]", interpolation: str = "bicubic") -> tuple[torch.Tensor, tuple[int, int]]:
    """The model's table as ``model.resize(image_size)`` would make it, without touching the model."""
    new_grid = check_divisible(to_pair(image_size), model.patch_size)
    with torch.no_grad():
        table = resample_pos_embed(model.pos_embed.detach().float(), new_grid, model.grid_size,
                                   model.num_pos_prefix_tokens, interpolation)
    return table, new_grid


def model_pos_embed_similarity(model) -> torch.Tensor:
    """The grid of grids of ``model``'s own table at its current size."""
    return pos_embed_similarity(model.pos_embed.detach(), model.grid_size, model.num_pos_prefix_tokens)
