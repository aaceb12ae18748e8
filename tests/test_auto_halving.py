"""Successive halving with a fake scorer and a fake clock; the budget's duration parsing."""

import pytest

from vit_transfer.autoselect.budget import Budget, parse_duration
from vit_transfer.autoselect.halving import Candidate, successive_halving
from vit_transfer.errors import ConfigError

CANDIDATES = [Candidate(m, lr) for m in ("lora", "ssf") for lr in (1e-3, 1e-2, 1e-1, 1.0)]
QUALITY = {c: q for c, q in zip(CANDIDATES, (0.1, 0.5, 0.9, 0.3, 0.2, 0.8, 0.4, 0.7))}


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_drops_the_worse_half_each_rung():
    calls = []

    def score(candidate, steps):
        calls.append((candidate, steps))
        return QUALITY[candidate]

    result = successive_halving(CANDIDATES, score, min_resource=10)
    rungs = [[c for c, s in calls if s == steps] for steps in (10, 20, 40)]
    assert [len(r) for r in rungs] == [8, 4, 2] and len(calls) == 14
    # the 4 best of rung 0 go on, then the 2 best of those
    assert set(rungs[1]) == {c for c in CANDIDATES if QUALITY[c] >= 0.5}
    assert set(rungs[2]) == {c for c in CANDIDATES if QUALITY[c] >= 0.8}
    assert result.winner == Candidate("lora", 1e-1) and result.rungs_completed == 3
    assert not result.stopped_by_budget
    assert result.last_trial(result.winner).resource == 40


def test_ties_go_to_the_candidate_listed_first():
    result = successive_halving(CANDIDATES, lambda c, s: 0.5, min_resource=1)
    assert result.ranking == CANDIDATES[:2] and result.winner == CANDIDATES[0]  # every rung keeps the first listed
    shuffled = CANDIDATES[::-1]
    assert successive_halving(shuffled, lambda c, s: 0.5, min_resource=1).winner == shuffled[0]


def test_max_resource_caps_the_run_length():
    steps = []
    result = successive_halving(CANDIDATES, lambda c, s: steps.append(s) or QUALITY[c], min_resource=10,
                                max_resource=15)
    assert sorted(set(steps)) == [10, 15] and result.rungs_completed == 2 and len(result.ranking) == 4


def test_honours_the_budget():
    clock = FakeClock()
    budget = Budget(100.0, progress=False, clock=clock)

    def score(candidate, steps):  # each run costs one second per step
        clock.now += steps
        return QUALITY[candidate]

    # rung 0: 8 runs x 10 s = 80 s; rung 1 would cost 20 s per run, only 20 s are left: one run, then stop
    result = successive_halving(CANDIDATES, score, min_resource=10, budget=budget, clock=clock)
    assert result.stopped_by_budget and result.rungs_completed == 1
    assert [t.rung for t in result.trials].count(1) == 1
    assert clock.now <= 100.0
    # the ranking is the last complete rung's, by validation top-1
    assert result.ranking[:2] == [Candidate("lora", 1e-1), Candidate("ssf", 1e-2)]


def test_a_budget_cut_in_the_first_rung_ranks_what_it_scored():
    clock = FakeClock()
    budget = Budget(35.0, progress=False, clock=clock)

    def score(candidate, steps):
        clock.now += steps
        return QUALITY[candidate]

    result = successive_halving(CANDIDATES, score, min_resource=10, budget=budget, clock=clock)
    assert len(result.trials) == 3 and result.rungs_completed == 0 and result.stopped_by_budget
    assert result.winner == Candidate("lora", 1e-1)  # the best of the three that ran


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("20m", 1200), ("1h30m", 5400), ("300", 300), (45, 45),
                                          ("1.5m", 90)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "0", "m"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError, match="budget"):
        parse_duration(text)


def test_leaderboard_sorts_by_validation_and_marks_the_returned_model(tmp_path):
    import json

    from vit_transfer.autoselect.leaderboard import Row, write_leaderboard

    rows = [Row("probe (cls, last 1 block)", 0.1, "C", None, None, 0.80, 1.0, "probe sweep", returned=True),
            Row("lora", 0.003, "lr", 40, 2.5, 0.75, 3.2, "halving rung 0", augment="resize"),
            Row("ssf", 0.01, "lr", 40, 2.5, 0.80, 2.9, "halving rung 0")]
    md, js = write_leaderboard(rows, tmp_path, budget_seconds=60, elapsed=41.5, summary="Returned: probe")
    board = json.loads(js.read_text())
    assert [r["method"] for r in board["rows"]] == ["probe (cls, last 1 block)", "ssf", "lora"]  # ties keep run order
    assert board["budget_seconds"] == 60 and board["elapsed_seconds"] == 41.5
    lines = md.read_text().splitlines()
    assert "| **returned** | probe (cls, last 1 block) | - | C 0.1 | - | - | 0.8000 | 1.0 | probe sweep |" in lines
    assert "|  | lora | resize | lr 0.003 | 40 | 2.5 | 0.7500 | 3.2 | halving rung 0 |" in lines


def test_equal_top1_goes_to_the_lower_validation_loss():
    """Small validation splits tie on top-1 often: the loss breaks the tie, before the listing order."""
    loss = {c: 1.0 - QUALITY[c] for c in CANDIDATES}
    result = successive_halving(CANDIDATES, lambda c, s: (0.5, loss[c]), min_resource=1)
    assert result.winner == max(CANDIDATES, key=QUALITY.get)
    assert [t.val_loss for t in result.trials[:2]] == [loss[c] for c in CANDIDATES[:2]]
    # a scorer without a loss still ranks (and ties go to the first listed, as before)
    assert successive_halving(CANDIDATES, lambda c, s: 0.5, min_resource=1).winner == CANDIDATES[0]


def test_candidates_run_every_method_at_its_middle_rate_first():
    from vit_transfer.autoselect.candidates import MENU, candidates_for, log_rates, middle_out

    assert middle_out(5) == [2, 1, 3, 0, 4] and middle_out(3) == [1, 0, 2] and middle_out(1) == [0]
    methods = ("lp-ft", "lora", "ssf")
    listed = candidates_for(100, rates_per_method=3, methods=methods)
    assert [c.method for c in listed[:3]] == list(methods)
    assert [c.lr for c in listed[:3]] == [log_rates(*MENU[m].lr_range, 3)[1] for m in methods]
    assert sorted((c.method, c.lr) for c in listed) == sorted(
        (m, lr) for m in methods for lr in log_rates(*MENU[m].lr_range, 3))  # every pair, once
    # a first rung that the budget cuts after three runs has tried each method once
    clock = FakeClock()
    budget = Budget(10.0, progress=False, clock=clock)

    def score(candidate, steps):
        clock.now += 3.0
        return 0.5

    result = successive_halving(listed, score, min_resource=1, budget=budget)
    assert result.stopped_by_budget and {t.candidate.method for t in result.trials} == set(methods)


def test_prescored_runs_are_taken_as_they_are_not_run_again():
    """auto's augmentation duel already ran one candidate at the first rung's length: the halving reuses that run
    (its score and its seconds) instead of running it again, and ranks it with the others."""
    calls = []

    def score(candidate, steps):
        calls.append((candidate, steps))
        return QUALITY[candidate]

    from vit_transfer.autoselect.halving import Trial

    lead = CANDIDATES[2]  # the best (0.9)
    before = Trial(lead, 0, 10, QUALITY[lead], seconds=7.5)
    result = successive_halving(CANDIDATES, score, min_resource=10, prescored=[before])
    assert (lead, 10) not in calls and len([c for c, s in calls if s == 10]) == 7
    assert (lead, 20) in calls  # the later rungs run it as usual
    rung0 = [t for t in result.trials if t.rung == 0]
    assert len(rung0) == 8 and next(t for t in rung0 if t.candidate == lead).seconds == 7.5
    assert result.winner == lead


def test_the_augmentation_duel_keeps_the_better_on_validation():
    from vit_transfer.autoselect.augment import augment_config, choose_augment

    clock = FakeClock()

    def duel(scores):
        def score(name):
            clock.now += 2.0
            return scores[name]
        return choose_augment(("crop-flip", "resize"), score, clock)

    picked = duel({"crop-flip": (0.66, 1.1), "resize": (0.77, 0.9)})
    assert picked.chosen == "resize" and [e.seconds for e in picked.entries] == [2.0, 2.0]
    assert duel({"crop-flip": (0.8, 0.5), "resize": (0.7, 0.4)}).chosen == "crop-flip"
    assert duel({"crop-flip": (0.7, 0.6), "resize": (0.7, 0.4)}).chosen == "resize"  # equal top-1: the lower loss
    assert duel({"crop-flip": (0.7, None), "resize": (0.7, None)}).chosen == "crop-flip"  # all equal: listed first
    assert duel({"crop-flip": (-1.0, None), "resize": (0.1, 2.0)}).chosen == "resize"  # a failed run loses
    resize = augment_config("resize", label_smoothing=0.1)
    assert (resize.crop, resize.hflip, resize.label_smoothing) == ("resize", False, 0.1)
    crops = augment_config("crop-flip")
    assert (crops.crop, crops.crop_scale, crops.hflip) == ("random_resized_crop", (0.35, 1.0), True)
    with pytest.raises(ValueError, match="crop-flip.*resize"):
        augment_config("mirror")


def test_an_unknown_auto_augmentation_is_a_config_error():
    from vit_transfer.autoselect import AutoSettings

    with pytest.raises(ConfigError, match=r"augmentations must be distinct names.*\['flip'\]"):
        AutoSettings(augments=("flip",))
    with pytest.raises(ConfigError, match="distinct"):
        AutoSettings(augments=("resize", "resize"))
