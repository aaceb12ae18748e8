"""Top-k hits counted on the device: one definition for training evaluation and the probe."""

from __future__ import annotations

import torch


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """How many rows have their label among the ``k`` highest scores, for each ``k`` (a cut-off above
    the number of classes counts every row). One tensor on the logits' device: no host sync."""
    ranked = logits.topk(min(max(ks), logits.shape[-1]), dim=-1).indices
    hits = ranked == labels[:, None]
    return torch.stack([hits[:, :k].any(dim=1).sum() for k in ks])
