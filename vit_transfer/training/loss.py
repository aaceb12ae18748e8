"""Classification loss for hard labels ``(B,)`` and soft labels ``(B, K)`` (mixup / cutmix)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy; smoothing mixes the target with the uniform distribution, soft or hard."""
    logits = logits.float()
    if labels.ndim == 1:
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    targets = labels.float()
    if label_smoothing > 0:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
