"""Build a randomly initialised ViT from a few numbers: for pretraining from scratch."""

from __future__ import annotations

from dataclasses import dataclass

from ..caller_state import seeded_torch_rng
from .base import Preprocessing
from .hf_vit import HFViT
from .pos_embed_kinds import PosEmbedKind, apply_pos_embed_kind, check_pos_embed_kind, relative_bias_config


@dataclass
class ArchitectureConfig:
    """A plain ViT (transformers layout): the recipe's ``model.architecture_config`` for ``source: scratch``."""

    image_size: int = 28
    patch_size: int = 4
    num_channels: int = 3
    hidden_size: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_dim: int = 768
    dropout: float = 0.0
    attention_dropout: float = 0.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # none | learned (1-D) | learned_2d (row + column halves) | sincos_2d (fixed) | relative (bias in attention)
    pos_embed: PosEmbedKind = "learned"

    def __post_init__(self) -> None:
        check_pos_embed_kind(self.pos_embed, self.hidden_size)


def create_vit(arch: ArchitectureConfig, num_labels: int, id2label: dict[int, str] | None = None,
               seed: int = 0) -> HFViT:
    """A fresh ``ViTForImageClassification`` wrapped as a ``TransferModel`` (zero-initialised head); for
    ``pos_embed: relative`` the same network as transformers' ``BeitForImageClassification`` (pos_embed_kinds)."""
    from transformers import BeitForImageClassification, ViTForImageClassification

    from .spec import VitSpec, hf_vit_config

    id2label = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
    pre = Preprocessing(image_size=(arch.image_size, arch.image_size), mean=tuple(arch.mean), std=tuple(arch.std))
    spec = VitSpec(
        image_size=pre.image_size, patch_size=(arch.patch_size, arch.patch_size), num_channels=arch.num_channels,
        hidden_size=arch.hidden_size, depth=arch.depth, num_heads=arch.num_heads, intermediate_size=arch.mlp_dim,
        qkv_bias=True, activation="gelu", layer_norm_eps=1e-12, num_labels=num_labels, preprocessing=pre,
        label_names=tuple(id2label[i] for i in range(num_labels)), hidden_dropout=arch.dropout,
        attention_dropout=arch.attention_dropout,
    )
    config = hf_vit_config(spec)
    with seeded_torch_rng(seed):  # the weights depend on seed alone; the caller's stream stays where it was
        network = (BeitForImageClassification(relative_bias_config(config)) if arch.pos_embed == "relative"
                   else ViTForImageClassification(config))
        wrapped = HFViT(network, source="scratch", preprocessing=pre)
        wrapped.set_head(num_labels, id2label)
        apply_pos_embed_kind(wrapped, arch.pos_embed, std=wrapped.model.config.initializer_range)
    return wrapped
