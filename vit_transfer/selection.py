"""What "better on validation" means, once, for every choice the library makes on the validation split.

Ranking: keep-best (a run's best evaluation), WiSE-FT (its alpha), the probe sweep (its configuration) and auto's
successive halving (its candidates) all rank by the same rule: higher validation top-1, and on equal top-1 (common
on a small validation split) the lower validation loss; a missing loss ranks last.

Replacing a simpler model (``compare_paired``): a custom folder's validation split is small (30 images on lfw, where
one image is 3.3 points), so "the higher validation top-1 wins" returns a fine-tune that won by one lucky image as
often as one that is better: on lfw an LP-FT that scored 30/30 against its probe's 29/30 then scored 92% on the
test split against the probe's 98%. Both models are scored on the same images, so the comparison is paired and only
the images on which they disagree carry information: with ``gains`` images only the challenger gets right and
``losses`` images only the incumbent gets right, the difference ``gains - losses`` has standard deviation
``sqrt(gains + losses)`` when the two are equally good (the statistic of McNemar's test). The challenger replaces
the incumbent only when it wins by more than that: one standard error, the rule (Breiman et al.'s
one-standard-error rule) that keeps the simpler model within noise. auto uses it for {best probe, fine-tune}; an
LP-FT run for {its probe start, its fine-tune} (``train.keep_start_within_noise``).

Torch-free, so auto's halving stays pure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping


def validation_key(top1: float, loss: "float | None") -> tuple[float, float]:
    """Sort key, larger is better: top-1, then the negated loss (a missing loss is the worst)."""
    return (top1, -math.inf if loss is None else -loss)


def is_better(scores: dict, than: dict) -> bool:
    """``scores`` (``{"top1", "loss"}``) beat ``than``: a higher top-1, or the same top-1 with a lower loss."""
    return validation_key(scores["top1"], scores.get("loss")) > validation_key(than["top1"], than.get("loss"))


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same validation images: where they disagree, and whether the challenger clearly wins."""

    gains: int  # images only the challenger classifies correctly
    losses: int  # images only the incumbent classifies correctly
    images: int  # images both were scored on

    @property
    def z(self) -> float:
        """``(gains - losses) / sqrt(gains + losses)``: the difference in standard errors (0 when they never disagree)."""
        disagreements = self.gains + self.losses
        return (self.gains - self.losses) / math.sqrt(disagreements) if disagreements else 0.0

    @property
    def clearly_better(self) -> bool:
        """The challenger wins by more than one standard error of the paired difference."""
        return self.z > 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "z": self.z, "clearly_better": self.clearly_better}


def compare_paired(challenger: Mapping[int, bool], incumbent: Mapping[int, bool]) -> PairedComparison:
    """Compare two models' per-image correctness (``{dataset position: correct}``) on the positions both scored.

    Positions only one of them scored (an image one pass could not decode) are left out of both.
    """
    shared = sorted(set(challenger) & set(incumbent))
    if not shared:
        raise ValueError("the two models were scored on no common validation image")
    gains = sum(1 for p in shared if challenger[p] and not incumbent[p])
    losses = sum(1 for p in shared if incumbent[p] and not challenger[p])
    return PairedComparison(gains, losses, len(shared))
