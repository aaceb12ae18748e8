"""What a ViT learned and what a resize did: attention distance, position-embedding similarity, rollout.

``capture_attention`` reads every block's attention maps (HF or timm, LoRA-wrapped too; eager attention
while capturing, the model's own setting restored); the three measures work on those maps or on the
position table; ``inspect_model`` writes the figures and ``inspect.json`` (``vit-transfer inspect``).
See docs/inspect.md.
"""

from .attention_distance import (
    mean_attention_distance,
    model_attention_distance,
    patch_attention,
    patch_distances,
    uniform_attention_distance,
)
from .capture import attention_state, capture_attention, eager_attention
from .pos_embed_similarity import (
    locality,
    model_pos_embed_similarity,
    neighbour_mask,
    pos_embed_similarity,
    resized_table,
)
from .report import find_images, inspect_model, measure_attention
from .rollout import Rollout, attention_rollout, discard_weakest, fuse_heads

__all__ = [
    "Rollout",
    "attention_rollout",
    "attention_state",
    "capture_attention",
    "discard_weakest",
    "eager_attention",
    "find_images",
    "fuse_heads",
    "inspect_model",
    "locality",
    "mean_attention_distance",
    "measure_attention",
    "model_attention_distance",
    "model_pos_embed_similarity",
    "neighbour_mask",
    "patch_attention",
    "patch_distances",
    "pos_embed_similarity",
    "resized_table",
    "uniform_attention_distance",
]
