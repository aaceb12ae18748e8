"""One rule for "better on validation": keep-best, WiSE-FT, the probe sweep and auto's halving rank alike."""

import itertools

from vit_transfer.autoselect.halving import Candidate, Trial, rank
from vit_transfer.selection import is_better, validation_key

SCORES = [(0.9, 0.5), (0.9, 0.3), (0.8, 0.1), (0.9, None), (0.7, None)]


def test_top1_first_then_the_lower_loss_and_a_missing_loss_last():
    assert is_better({"top1": 0.9, "loss": 0.3}, {"top1": 0.9, "loss": 0.5})
    assert is_better({"top1": 0.9, "loss": 9.0}, {"top1": 0.8, "loss": 0.1})
    assert is_better({"top1": 0.9, "loss": 9.0}, {"top1": 0.9, "loss": None})
    assert not is_better({"top1": 0.9, "loss": 0.3}, {"top1": 0.9, "loss": 0.3})  # a full tie keeps the incumbent
    assert validation_key(0.5, None) < validation_key(0.5, 1e9)


def test_the_halving_ranks_by_the_same_rule_as_keep_best():
    candidates = [Candidate("m", 10.0 ** -i) for i in range(len(SCORES))]
    trials = [Trial(c, 1, 1, top1, 0.0, loss) for c, (top1, loss) in zip(candidates, SCORES)]
    ranked = rank(trials, {c: i for i, c in enumerate(candidates)})
    by = {c: {"top1": t, "loss": loss} for c, (t, loss) in zip(candidates, SCORES)}
    for better, worse in itertools.combinations(ranked, 2):
        assert not is_better(by[worse], by[better])
    assert [SCORES[candidates.index(c)] for c in ranked] == [(0.9, 0.3), (0.9, 0.5), (0.9, None), (0.8, 0.1),
                                                             (0.7, None)]
