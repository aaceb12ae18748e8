"""``VitSpec``: a standard ViT's function in neither ecosystem's vocabulary, and the transformers config it makes.

Conversion (``convert.py``) reads a model into one and builds the other ecosystem's from it; a model built from
scratch (``scratch.py``) starts from one. Kept apart from both so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Preprocessing

HF_ACT_FOR = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}  # VitSpec.activation -> transformers hidden_act


@dataclass(frozen=True)
class VitSpec:
    """Everything that fixes a standard ViT's function, in neither ecosystem's vocabulary."""

    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    num_channels: int
    hidden_size: int
    depth: int
    num_heads: int
    intermediate_size: int
    qkv_bias: bool
    activation: str  # "gelu" (erf) or "gelu_tanh"
    layer_norm_eps: float
    num_labels: int
    label_names: tuple[str, ...]
    preprocessing: Preprocessing
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0

    @property
    def mlp_ratio(self) -> float:
        return self.intermediate_size / self.hidden_size

    def summary(self) -> str:
        return (
            f"{self.image_size[0]}x{self.image_size[1]} px, patch {self.patch_size[0]}x{self.patch_size[1]}, "
            f"width {self.hidden_size}, depth {self.depth}, {self.num_heads} heads, mlp {self.intermediate_size}, "
            f"{self.num_labels} labels, LayerNorm eps {self.layer_norm_eps:g}"
        )


def hf_vit_config(spec: VitSpec):
    """The ``ViTConfig`` of the spec's network."""
    from transformers import ViTConfig

    def flat(pair: tuple[int, int]):
        return pair[0] if pair[0] == pair[1] else list(pair)

    names = spec.label_names if len(spec.label_names) == spec.num_labels else tuple(
        f"LABEL_{i}" for i in range(spec.num_labels)
    )
    config = ViTConfig(
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.depth,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        hidden_act=HF_ACT_FOR[spec.activation],
        hidden_dropout_prob=spec.hidden_dropout,
        attention_probs_dropout_prob=spec.attention_dropout,
        layer_norm_eps=spec.layer_norm_eps,
        image_size=flat(spec.image_size),
        patch_size=flat(spec.patch_size),
        num_channels=spec.num_channels,
        qkv_bias=spec.qkv_bias,
        num_labels=spec.num_labels,
        id2label={i: n for i, n in enumerate(names)},
        label2id={n: i for i, n in enumerate(names)},
    )
    config.architectures = ["ViTForImageClassification"]
    return config
