"""Is a fine-tune clearly better than the probe on the same validation images? A paired test at one standard error.

A custom folder's validation split is small (30 images on lfw, where one image is 3.3 points), so "the higher
validation top-1 wins" returns a fine-tune that won by one lucky image as often as one that is better: on lfw a
fine-tune that scored 30/30 against the probe's 29/30 then scored 6 points lower on the test split. Both models are
scored on the same images, so the comparison is paired and only the images on which they disagree carry
information: with ``gains`` images only the challenger gets right and ``losses`` images only the incumbent gets right,
the difference ``gains - losses`` has standard deviation ``sqrt(gains + losses)`` when the two are equally good (the
statistic of McNemar's test). The challenger replaces the incumbent only when it wins by more than that: one
standard error, the rule (Breiman et al.'s one-standard-error rule) that keeps the simpler model within noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping


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
