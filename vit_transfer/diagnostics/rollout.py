"""Attention rollout (Abnar & Zuidema, 2020): how much each patch feeds the output token through all blocks.

Per block the heads are fused (mean, max or min), the weakest ``discard_ratio`` of the weights to patch
keys are zeroed per image (attention to prefix tokens is always kept), the residual path is added as
``(A + I) / 2`` and each row renormalised; the blocks multiply, last on the left:
``R = A_L ... A_2 A_1``. The class token's row of ``R`` over the patch grid (or the mean of every prefix
row, for models whose output is not the class token alone; a model with no prefix token at all, mean
pooled, gets the mean of every row) is the map. Any number of prefix tokens
(distillation, registers) and non-square grids work; everything is batched.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

HeadFusion = Literal["mean", "max", "min"]
RolloutQuery = Literal["cls", "prefix"]
HEAD_FUSIONS = ("mean", "max", "min")
QUERIES = ("cls", "prefix")


def fuse_heads(attention: torch.Tensor, head_fusion: HeadFusion = "mean") -> torch.Tensor:
    """``(B, heads, N, N) -> (B, N, N)``."""
    if head_fusion == "mean":
        return attention.mean(1)
    if head_fusion == "max":
        return attention.amax(1)
    if head_fusion == "min":
        return attention.amin(1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")


def discard_weakest(attention: torch.Tensor, ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Zero the smallest ``ratio`` of each image's weights to patch keys in ``(B, N, N)`` attention."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {ratio}")
    patch_keys = attention[:, :, num_prefix_tokens:].flatten(1)
    count = int(patch_keys.shape[1] * ratio)
    if count == 0:
        return attention
    weakest = patch_keys.topk(count, dim=1, largest=False).indices
    kept = patch_keys.scatter(1, weakest, 0.0)
    out = attention.clone()
    out[:, :, num_prefix_tokens:] = kept.view_as(out[:, :, num_prefix_tokens:])
    return out


class Rollout:
    """Rollout built one block at a time (oldest first), so the maps of a deep model need not all be kept."""

    def __init__(self, num_prefix_tokens: int, grid: tuple[int, int], head_fusion: HeadFusion = "mean",
                 discard_ratio: float = 0.0, query: RolloutQuery = "cls"):
        if query not in QUERIES:
            raise ValueError(f"query must be one of {QUERIES}, got {query!r}")
        self.num_prefix_tokens, self.grid = num_prefix_tokens, grid
        self.head_fusion, self.discard_ratio, self.query = head_fusion, discard_ratio, query
        self.joint: torch.Tensor | None = None

    def add(self, attention: torch.Tensor) -> None:
        """Fold in the next block's ``(B, heads, N, N)`` attention."""
        fused = discard_weakest(fuse_heads(attention.double(), self.head_fusion), self.discard_ratio,
                                self.num_prefix_tokens)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        step = (fused + eye) / 2
        step = step / step.sum(-1, keepdim=True)
        self.joint = step if self.joint is None else step @ self.joint

    def maps(self) -> torch.Tensor:
        """``(B, gh, gw)``: the chosen row of the product over the patch grid."""
        if self.joint is None:
            raise ValueError("no attention was added to the rollout")
        prefix, joint = self.num_prefix_tokens, self.joint
        if prefix == 0:  # no class token (a mean-pooled model): the mean of every row, what the pooling reads
            rows = joint.mean(1)
        else:
            rows = joint[:, 0] if self.query == "cls" else joint[:, :prefix].mean(1)
        patches = rows[:, prefix:]
        if patches.shape[1] != self.grid[0] * self.grid[1]:
            raise ValueError(f"{patches.shape[1]} patch tokens do not fit a {self.grid[0]}x{self.grid[1]} grid")
        return patches.reshape(-1, self.grid[0], self.grid[1])


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    num_prefix_tokens: int,
    grid: tuple[int, int],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    query: RolloutQuery = "cls",
) -> torch.Tensor:
    """``(B, gh, gw)`` rollout maps from the blocks' ``(B, heads, N, N)`` attention, oldest block first."""
    rollout = Rollout(num_prefix_tokens, grid, head_fusion, discard_ratio, query)
    for attention in attentions:
        rollout.add(attention)
    return rollout.maps()
