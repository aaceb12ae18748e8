"""The position-embedding choices of a ViT built from scratch (the ViT paper's Appendix D.4 ablation).

The four absolute choices live in the stock learned table (``position_embeddings``), so a trained model saves
and reloads with the stock loaders, resizes and converts like any ViT; what differs is the table's start
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

- ``relative``: no absolute table; each block adds a learned bias to its attention logits, one value per head
  and per 2-D offset between query and key patch (``(2gh-1)(2gw-1)`` offsets, plus class-to-patch,
  patch-to-class and class-to-class), as BEiT and Swin do. The network is transformers' BEiT set up as the same
  plain ViT (``relative_bias_config``: no layer scale, class-token head, no shared bias), so it too saves and
  reloads with the stock loaders; the bias starts at zero (BEiT's init). Its key projection has no bias, which
  changes nothing: a key bias adds the same number to every logit of a query row, and softmax ignores that.
  It cannot be resized (the bias tables are sized for the grid) or converted to timm.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ConfigError

PosEmbedKind = Literal["none", "learned", "learned_2d", "sincos_2d", "relative"]
POS_EMBED_KINDS = ("none", "learned", "learned_2d", "sincos_2d", "relative")

# what transformers' ViT and BEiT configs share, copied from one to the other
SHARED_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                      "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "initializer_range",
                      "image_size", "patch_size", "num_channels", "id2label", "label2id")


def check_pos_embed_kind(kind: str, hidden_size: int) -> str:
    """The choice, or a ``ConfigError`` naming ``model.scratch.pos_embed`` and what does not fit."""
    if kind not in POS_EMBED_KINDS:
        raise ConfigError(f"model.scratch.pos_embed must be one of {', '.join(POS_EMBED_KINDS)}, got {kind!r}")
    if kind == "learned_2d" and hidden_size % 2:
        raise ConfigError(f"model.scratch.pos_embed=learned_2d splits the width in halves; hidden_size {hidden_size} is odd")
    if kind == "sincos_2d" and hidden_size % 4:
        raise ConfigError(f"model.scratch.pos_embed=sincos_2d needs hidden_size divisible by 4, got {hidden_size}")
    return kind


def relative_bias_config(vit_config):
    """The ``BeitConfig`` of ``vit_config``'s network with a per-block relative position bias and no absolute
    table: BEiT's extras that a plain ViT lacks (layer scale, mean pooling, shared bias, drop path) are off."""
    from transformers import BeitConfig

    config = BeitConfig(
        **{key: getattr(vit_config, key) for key in SHARED_CONFIG_KEYS},
        use_absolute_position_embeddings=False, use_relative_position_bias=True,
        use_shared_relative_position_bias=False, layer_scale_init_value=0.0, use_mean_pooling=False,
        drop_path_rate=0.0, use_mask_token=False,
    )
    config.architectures = ["BeitForImageClassification"]
    return config


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
    if kind in ("learned", "relative"):  # relative: no table; the bias is built by relative_bias_config
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
