"""What "better on validation" means, once, for every choice the library makes on the validation split.

keep-best (a run's best evaluation), WiSE-FT (its alpha), the probe sweep (its configuration) and auto's successive
halving (its candidates) all rank by the same rule: higher validation top-1, and on equal top-1 (common on a small
validation split) the lower validation loss; a missing loss ranks last. Torch-free, so the halving stays pure.
"""

from __future__ import annotations

import math


def validation_key(top1: float, loss: "float | None") -> tuple[float, float]:
    """Sort key, larger is better: top-1, then the negated loss (a missing loss is the worst)."""
    return (top1, -math.inf if loss is None else -loss)


def is_better(scores: dict, than: dict) -> bool:
    """``scores`` (``{"top1", "loss"}``) beat ``than``: a higher top-1, or the same top-1 with a lower loss."""
    return validation_key(scores["top1"], scores.get("loss")) > validation_key(than["top1"], than.get("loss"))
