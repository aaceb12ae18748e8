"""auto's final choice: a challenger replaces the probe only when it wins the paired comparison by more than one
standard error (``sqrt(gains + losses)`` images)."""

import math

import pytest

from vit_transfer.selection import compare_paired


def correctness(pattern: str) -> dict[int, bool]:
    return {i: c == "1" for i, c in enumerate(pattern)}


@pytest.mark.parametrize("challenger, incumbent, gains, losses, clearly", [
    ("1111", "1110", 1, 0, False),  # one image: z = 1, not more than one standard error
    ("1111", "1100", 2, 0, True),  # z = 2 / sqrt(2)
    ("1110", "1101", 1, 1, False),  # a draw
    ("11110", "10001", 3, 1, False),  # z = 2 / sqrt(4) = 1
    ("111110", "100001", 4, 1, True),  # z = 3 / sqrt(5)
    ("0000", "0000", 0, 0, False),  # never disagree
])
def test_counts_disagreements_and_asks_for_more_than_one_standard_error(challenger, incumbent, gains, losses, clearly):
    result = compare_paired(correctness(challenger), correctness(incumbent))
    assert (result.gains, result.losses, result.images) == (gains, losses, len(challenger))
    assert result.clearly_better is clearly
    disagreements = gains + losses
    assert result.z == pytest.approx((gains - losses) / math.sqrt(disagreements) if disagreements else 0.0)


def test_only_images_both_scored_count():
    challenger = {0: True, 1: True, 2: True, 7: True}  # 7: the probe's pass could not decode it
    incumbent = {0: False, 1: False, 2: True, 5: False}  # 5: the challenger's pass could not decode it
    result = compare_paired(challenger, incumbent)
    assert (result.gains, result.losses, result.images) == (2, 0, 3)
    with pytest.raises(ValueError, match="no common validation image"):
        compare_paired({0: True}, {1: True})
