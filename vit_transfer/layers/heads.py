"""Classification heads and token pooling shared by both ecosystems."""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("cls", "mean", "cls+mean")


def pool_tokens(tokens: torch.Tensor, pooling: str, num_prefix_tokens: int) -> torch.Tensor:
    """Pool ``(B, N, D)`` tokens: class token, mean of patch tokens, or both concatenated."""
    if pooling == "cls":
        return tokens[:, 0]
    patches = tokens[:, num_prefix_tokens:]
    if pooling == "mean":
        return patches.mean(dim=1)
    if pooling == "cls+mean":
        return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}: use one of {POOLINGS}")


def pooled_dim(embed_dim: int, pooling: str) -> int:
    return 2 * embed_dim if pooling == "cls+mean" else embed_dim


def build_head(
    in_features: int,
    num_labels: int,
    kind: str = "linear",
    hidden_dim: int | None = None,
    dropout: float = 0.0,
    init: str = "zeros",
) -> nn.Module:
    """A linear (default) or one-hidden-layer MLP head.

    ``init="zeros"`` zero-initialises the last layer, as the ViT paper does when fine-tuning: the
    first steps then start from uniform predictions instead of random logits.
    """
    if kind == "linear":
        last = nn.Linear(in_features, num_labels)
        head: nn.Module = last if dropout == 0 else nn.Sequential(nn.Dropout(dropout), last)
    elif kind == "mlp":
        hidden = hidden_dim or in_features
        last = nn.Linear(hidden, num_labels)
        head = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), last)
    else:
        raise ValueError(f"unknown head kind {kind!r}: use 'linear' or 'mlp'")
    if init == "zeros":
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    elif init == "trunc_normal":
        nn.init.trunc_normal_(last.weight, std=0.02)
        nn.init.zeros_(last.bias)
    else:
        raise ValueError(f"unknown head init {init!r}: use 'zeros' or 'trunc_normal'")
    return head
