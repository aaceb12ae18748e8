"""The position-embedding choices of a ViT built from scratch (the ViT paper's Appendix D.4 ablation).

Every choice lives in the stock learned table (``position_embeddings``), so a trained model saves and
reloads with the stock loaders, resizes and converts like any ViT; what differs is the table's start
and which changes the training gradient may make (a hook on the table's gradient, so it holds for SGD
and AdamW alike; the table is never weight-decayed):

- ``none``: an all-zero table whose gradient is zeroed: the model sees no position at all.
- ``learned``: the free 1-D table (transformers' default), one row per patch.
- ``learned_2d``: factorised: patch (r, c) is ``[row_r, col_c]``, the first half of the width learned per
  grid row, the second per grid column. The gradient is projected onto such tables (the first half
  averaged over each row's patches, the second over each column's), so elementwise optimisers keep it
  factorised exactly. The class-token row stays free.
- ``sincos_2d``: timm's fixed 2-D sin-cos table (MAE / "ViT baselines"), class row zero, gradient zeroed.

After saving, a table is a plain learned table: a model fine-tuned from it trains the table freely.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError

PosEmbedKind = Literal["none", "learned", "learned_2d", "sincos_2d"]
POS_EMBED_KINDS = ("none", "learned", "learned_2d", "sincos_2d")


def check_pos_embed_kind(kind: str, hidden_size: int) -> str:
    """The choice, or a ``ConfigError`` naming ``model.scratch.pos_embed`` and what does not fit."""
    if kind not in POS_EMBED_KINDS:
        raise ConfigError(f"model.scratch.pos_embed must be one of {', '.join(POS_EMBED_KINDS)}, got {kind!r}")
    if kind == "learned_2d" and hidden_size % 2:
        raise ConfigError(f"model.scratch.pos_embed=learned_2d splits the width in halves; hidden_size {hidden_size} is odd")
    if kind == "sincos_2d" and hidden_size % 4:
        raise ConfigError(f"model.scratch.pos_embed=sincos_2d needs hidden_size divisible by 4, got {hidden_size}")
    return kind


def factorised_part(table: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """The nearest factorised table (the projection ``learned_2d`` applies to gradients)."""
    gh, gw = grid
    patches = table[:, num_prefix_tokens:].reshape(table.shape[0], gh, gw, table.shape[-1])
    half = table.shape[-1] // 2
    rows = patches[..., :half].mean(2, keepdim=True).expand(-1, gh, gw, half)
    cols = patches[..., half:].mean(1, keepdim=True).expand(-1, gh, gw, table.shape[-1] - half)
    projected = torch.cat([rows, cols], dim=-1).reshape(table.shape[0], gh * gw, -1)
    return torch.cat([table[:, :num_prefix_tokens], projected], dim=1)


def apply_pos_embed_kind(model, kind: str, std: float = 0.02) -> None:
    """Set up ``model.pos_embed`` (a ``TransferModel`` just built at random) for ``kind``."""
    check_pos_embed_kind(kind, model.embed_dim)
    if kind == "learned":
        return
    table = model.pos_embed
    prefix, (gh, gw) = model.num_pos_prefix_tokens, model.grid_size
    dim = table.shape[-1]
    with torch.no_grad():
        if kind == "none":
            table.zero_()
        elif kind == "sincos_2d":
            from timm.layers import build_sincos2d_pos_embed

            table.zero_()
            table[0, prefix:] = build_sincos2d_pos_embed([gh, gw], dim).to(table.dtype)
        else:  # learned_2d: random row and column halves
            rows = torch.randn(gh, 1, dim // 2) * std
            cols = torch.randn(1, gw, dim - dim // 2) * std
            patches = torch.cat([rows.expand(gh, gw, -1), cols.expand(gh, gw, -1)], dim=-1)
            table[0, prefix:] = patches.reshape(gh * gw, dim).to(table.dtype)
    if kind == "learned_2d":
        table.register_hook(lambda grad: factorised_part(grad, model.grid_size, model.num_pos_prefix_tokens))
    else:
        table.register_hook(torch.zeros_like)
