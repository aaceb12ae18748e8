"""``auto`` end to end on a tiny ViT and a tiny folder: chosen on validation only, within its budget, never below
the probe; and the errors that must stop it before anything is written."""

import json
import shutil
import time

import numpy as np
import pytest
import torch

from vit_transfer.autoselect import AutoSettings, BudgetError, auto
from vit_transfer.data import DataConfig, load_image_datasets
from vit_transfer.errors import DataError
from vit_transfer.inference import evaluate, load_trained_model
from vit_transfer.probe import ProbeConfig
from vit_transfer.testing import write_image_folder

FAST_PROBE = ProbeConfig(fewshot=False, cache=False, c_grid=[0.01, 1.0, 100.0], max_iter=100)


def settings(**overrides) -> AutoSettings:
    base = dict(batch_size=8, rates_per_method=2, methods=("head", "lora"), max_epochs=3, progress=False,
                probe=FAST_PROBE, val_fraction=0.25, augments=("crop-flip",))  # no duel: its own tests below
    return AutoSettings(**{**base, **overrides})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 colour classes, 16 training images each (a quarter carved for validation), 8 test images each."""
    return write_image_folder(tmp_path_factory.mktemp("auto_data"), per_class=16)


def shuffled_test_labels(folder, target):
    """A copy of ``folder`` whose test images are dealt to random classes: test labels carry no information."""
    shutil.copytree(folder, target)
    files = sorted((target / "test").glob("*/*.png"))
    classes = sorted(p.name for p in (target / "test").iterdir())
    rng = np.random.default_rng(1)
    staged = []
    for i, path in enumerate(files):
        moved = path.with_name(f"shuffled-{i}.png")
        path.rename(moved)
        staged.append(moved)
    for i, path in enumerate(staged):
        path.rename(target / "test" / classes[rng.integers(len(classes))] / path.name)
    return target


def validation_top1(run_folder, data_folder, val_fraction=0.25):
    """The saved model's validation accuracy, recomputed from the folder: the oracle for what auto reports."""
    data = load_image_datasets(DataConfig(source=str(data_folder), val_fraction=val_fraction, num_workers=0))
    return evaluate(load_trained_model(run_folder), data.eval, data.id2label, progress=False).numbers["top1"]


def choices(result) -> dict:
    return {"chosen": result.chosen, "val_top1": result.val_top1, "probe": result.sweep.best.summary() | {"seconds": 0},
            "halving": [(t.candidate, t.resource, t.val_top1) for t in result.halving.trials]}


def test_picks_by_validation_only(hf_vit_dir, folder, tmp_path):
    small = settings(methods=("head",), max_epochs=2)  # two candidates: a halving, a winner's run, WiSE-FT
    first = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=tmp_path / "a", settings=small)
    other = shuffled_test_labels(folder, tmp_path / "shuffled")
    second = auto(str(other), str(hf_vit_dir), budget_seconds=600, output_dir=tmp_path / "b", settings=small)
    assert choices(first) == choices(second)
    assert [r.method for r in first.rows] == [r.method for r in second.rows]
    # the test split was scored (once, on the returned model) and does differ between the two
    assert first.metrics["test_top1"] != second.metrics["test_top1"]
    assert first.metrics["test_examples"] == second.metrics["test_examples"] == 24


def test_returns_at_least_the_probe_and_writes_the_run_folder(hf_vit_dir, folder, tmp_path):
    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out, settings=settings())
    assert result.val_top1 >= result.sweep.val_top1
    # what auto reports is what the saved model does on the validation split
    assert validation_top1(out, folder) == pytest.approx(result.val_top1)
    for name in ("model", "metrics.json", "run_info.json", "recipe.yaml", "evaluation", "leaderboard.md",
                 "leaderboard.json", "auto.json"):
        assert (out / name).exists(), name
    board = json.loads((out / "leaderboard.json").read_text())
    returned = [r for r in board["rows"] if r["returned"]]
    assert len(returned) == 1 and returned[0]["val_top1"] == pytest.approx(result.val_top1)
    # every probe configuration, every halving run, the winner's final run and its WiSE-FT interpolation (they ran,
    # and lost to the probe here)
    assert len(board["rows"]) == len(result.sweep.trials) + len(result.halving.trials) + 2
    final, wise = [r for r in board["rows"] if r["stage"].startswith("final")]  # the board is sorted by val top-1
    assert final["stage"].startswith("final (keep-best") and wise["stage"] == "final, interpolated"
    assert wise["val_top1"] >= final["val_top1"]  # WiSE-FT's grid holds alpha 1: never below the fine-tune
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["auto"]["chosen"] == result.chosen and "test_top1" in metrics
    assert not list(tmp_path.glob(".tmp-*"))  # the staging folder is gone


def rig_the_probe(monkeypatch, right_on: int):
    """The tiny colour task is solved by every probe: make the sweep's probe report 0 on validation and be right on
    only the first ``right_on`` validation images in the paired comparison."""
    import vit_transfer.autoselect.run as auto_run

    real_sweep, real_correct = auto_run.sweep_probes, auto_run.probe_correct

    def losing_sweep(*args, **kwargs):
        sweep = real_sweep(*args, **kwargs)
        sweep.val_top1 = 0.0
        return sweep

    def rigged_correct(sweep, val):
        return {p: i < right_on for i, p in enumerate(sorted(real_correct(sweep, val)))}

    monkeypatch.setattr(auto_run, "sweep_probes", losing_sweep)
    monkeypatch.setattr(auto_run, "probe_correct", rigged_correct)


def test_a_fine_tune_that_beats_the_probe_is_returned_with_a_train_recipe(hf_vit_dir, folder, tmp_path, monkeypatch):
    from vit_transfer.training import load_train_recipe

    rig_the_probe(monkeypatch, right_on=0)
    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out,
                  settings=settings(methods=("lp-ft",), rates_per_method=1))
    assert result.chosen.startswith("lp-ft") and result.chosen.endswith(", its start")  # see final below
    assert result.val_top1 > result.sweep.val_top1
    assert validation_top1(out, folder) == pytest.approx(result.val_top1)
    recipe = load_train_recipe(out / "recipe.yaml")  # vit-transfer train reads it back
    assert recipe.method == "full" and recipe.model.head_init == "probe" and recipe.data.test_split is None
    # the fine-tune, its WiSE-FT, and its start: LP-FT's class-token probe solves the colours (val 1.0), so the
    # fine-tune cannot be clearly better and train.keep_start_within_noise returns the start
    final = [r for r in result.rows if r.stage.startswith("final")]
    assert [r.returned for r in final] == [False, False, True] and final[2].method == "lp-ft start"
    assert recipe.train.keep_start_within_noise is None  # train's default: on for LP-FT, as here
    assert recipe.train.max_steps == final[0].steps == final[1].steps and recipe.train.wise_ft
    metrics = json.loads((out / "metrics.json").read_text())
    # the returned start is WiSE-FT's alpha 0; the fine-tune's own pick is kept aside
    assert metrics["finetuned_wise_ft_alpha"] == final[1].rate and metrics["wise_ft_alpha"] == 0.0
    versus = metrics["auto"]["winner_vs_probe"]  # right on every image the probe misses: all 12
    assert versus["gains"] == versus["images"] == 12 and versus["losses"] == 0 and versus["clearly_better"]
    assert "the winner is returned" in (out / "leaderboard.md").read_text()


def test_a_fine_tune_that_clearly_beats_the_probe_is_returned_itself(hf_vit_dir, folder, tmp_path, monkeypatch):
    rig_the_probe(monkeypatch, right_on=0)
    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out,
                  settings=settings(methods=("head",), rates_per_method=1, max_epochs=2))
    assert result.chosen.startswith("head lr=") and not result.chosen.endswith("its start")
    final = [r for r in result.rows if r.stage.startswith("final")]  # the fine-tune, then its WiSE-FT (returned)
    assert [r.returned for r in final] == [False, True]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "returned" not in metrics  # head-only starts from a zero head: no start to keep
    assert metrics["auto"]["winner_vs_probe"]["clearly_better"]
    assert validation_top1(out, folder) == pytest.approx(result.val_top1)


def test_a_fine_tune_ahead_by_one_validation_image_is_not_returned(hf_vit_dir, folder, tmp_path, monkeypatch):
    """One image in 12 is within one standard error of the paired difference: the probe is kept."""
    rig_the_probe(monkeypatch, right_on=11)  # the fine-tune (right on all 12) is ahead by at most one image
    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out,
                  settings=settings(methods=("lp-ft",), rates_per_method=1))
    assert result.chosen == "probe"
    versus = json.loads((out / "metrics.json").read_text())["auto"]["winner_vs_probe"]
    assert versus["images"] == 12 and versus["gains"] <= 1 and not versus["clearly_better"]
    assert "so the best probe is returned" in (out / "leaderboard.md").read_text()


def test_the_augmentation_duel_chooses_on_validation_and_the_winner_keeps_its_choice(hf_vit_dir, folder, tmp_path,
                                                                                   monkeypatch):
    """The first candidate runs once per augmentation; the better on validation is every candidate's, its duel run is
    its first halving rung (not run again), and the returned winner's recipe.yaml trains with it."""
    from vit_transfer.autoselect.augment import AUGMENTS
    from vit_transfer.selection import validation_key
    from vit_transfer.training import load_train_recipe

    rig_the_probe(monkeypatch, right_on=0)
    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out,
                  settings=settings(methods=("head",), rates_per_method=1, max_epochs=2,
                                    augments=("crop-flip", "resize")))
    entries = result.augment.entries
    assert [e.augment for e in entries] == ["crop-flip", "resize"]
    best = max(entries, key=lambda e: validation_key(e.val_top1, e.val_loss))
    assert result.augment.chosen == best.augment
    duel = [r for r in result.rows if r.stage.startswith("augmentation duel")]
    assert [r.augment for r in duel] == ["crop-flip", "resize"] and len({r.steps for r in duel}) == 1
    assert not [r for r in result.rows if r.stage.startswith("halving")]  # the one candidate's rung 0 is the duel's
    (trial,) = result.halving.trials
    assert trial.candidate.augment == best.augment and trial.val_top1 == best.val_top1
    assert result.chosen.endswith(f"({best.augment})")
    recipe = load_train_recipe(out / "recipe.yaml")
    assert recipe.augment.crop == AUGMENTS[best.augment]["crop"]
    assert recipe.augment.hflip == AUGMENTS[best.augment]["hflip"]
    auto_json = json.loads((out / "auto.json").read_text())
    assert auto_json["halving"]["augment"]["chosen"] == best.augment
    assert json.loads((out / "metrics.json").read_text())["auto"]["augment"] == best.augment


def test_honours_a_small_budget(hf_vit_dir, folder, tmp_path):
    """A 12 s budget with room to spend it all (many candidates, no epoch cap): within 10% + fixed overhead."""
    budget = 12.0
    started = time.perf_counter()
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=budget, output_dir=tmp_path / "run",
                  settings=settings(methods=("head", "lora", "bitfit", "ssf"), rates_per_method=3, max_epochs=10_000,
                                    augments=("crop-flip", "resize")))
    elapsed = time.perf_counter() - started
    overhead = 3.0  # publishing the folder and closing the bar happen after the last check of the budget
    assert elapsed <= 1.1 * budget + overhead, elapsed
    assert elapsed >= 0.5 * budget  # it used the time it was given (the final run fills what is left)
    assert result.metrics["auto"]["elapsed_seconds"] <= 1.1 * budget


def _assert_nothing_written(tmp_path):
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_empty_class_folder_is_an_error(hf_vit_dir, tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=8)
    (data / "train" / "class_3").mkdir()
    with pytest.raises(DataError, match=r"class_3.*holds no image"):
        auto(str(data), str(hf_vit_dir), budget_seconds=60, output_dir=tmp_path / "run", settings=settings())
    _assert_nothing_written(tmp_path)


def test_one_class_is_an_error(hf_vit_dir, tmp_path):
    data = write_image_folder(tmp_path / "data", num_classes=1, per_class=8)
    with pytest.raises(DataError, match="at least two class"):
        auto(str(data), str(hf_vit_dir), budget_seconds=60, output_dir=tmp_path / "run", settings=settings())
    _assert_nothing_written(tmp_path)


def test_a_budget_too_small_for_the_probe_is_an_error(hf_vit_dir, folder, tmp_path):
    with pytest.raises(BudgetError, match="too small for even the probe"):
        auto(str(folder), str(hf_vit_dir), budget_seconds=0.01, output_dir=tmp_path / "run", settings=settings())
    _assert_nothing_written(tmp_path)


def test_a_non_empty_output_folder_is_refused(hf_vit_dir, folder, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        auto(str(folder), str(hf_vit_dir), budget_seconds=60, output_dir=tmp_path / "run", settings=settings())
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"


def test_vit_transfer_auto_is_the_function_after_its_package_is_imported():
    import vit_transfer
    import vit_transfer.autoselect.run  # noqa: F401  (importing the package must not shadow the function)
    from vit_transfer import auto as exported
    from vit_transfer.autoselect.run import auto as defined

    assert exported is defined and vit_transfer.auto is defined


def test_a_mispriced_final_run_is_stopped_at_the_budget(hf_vit_dir, folder, tmp_path, monkeypatch):
    """The winner's run planned on a wrong price (a millionth of a second a step) is stopped by the deadline
    hook: the probe is returned and the budget holds."""
    import vit_transfer.autoselect.run as auto_run

    monkeypatch.setattr(auto_run._Search, "_cost_model", lambda self, winner: (0.0, 1e-6))
    budget = 8.0
    started = time.perf_counter()
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=budget, output_dir=tmp_path / "run",
                  settings=settings(rates_per_method=1, max_epochs=10**6))
    elapsed = time.perf_counter() - started
    assert [r.stage for r in result.rows if r.stage.startswith("final")] == ["final (stopped: out of time)"]
    assert result.chosen == "probe"
    assert elapsed <= auto_run.OVERRUN * budget + 3.0, elapsed


def test_a_multi_block_probe_is_pushed_with_load_vit_and_the_stock_loader_note(hf_vit_dir, folder, tmp_path):
    from vit_transfer import load_vit
    from vit_transfer.hub import push_run

    out = tmp_path / "run"
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=600, output_dir=out,
                  settings=settings(poolings=("cls+mean",), blocks=(2,), methods=("head",), rates_per_method=1))
    assert result.chosen == "probe" and result.sweep.best.last_n == 2  # every fine-tune of this toy stays at chance
    note = result.metrics["auto"]["stock_loaders"]
    assert "last 2 block(s)" in note and "refuse the saved classifier" in note
    push_run(out, "me/auto-probe", dry_run_dir=tmp_path / "up")
    card = (tmp_path / "up" / "README.md").read_text()
    assert note in card and 'load_vit("me/auto-probe")' in card and "last_n=2" in card
    assert "linear probe on the frozen backbone" in card
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        # the same weights; float rounding only (the probe's C=100 head makes logits of ~1)
        torch.testing.assert_close(load_vit(str(tmp_path / "up")).eval()(pixels), result.model.eval()(pixels),
                                   atol=1e-4, rtol=1e-4)


def test_the_sweep_gets_the_time_no_fine_tune_could_use(hf_vit_dir, folder, tmp_path, monkeypatch):
    """When the halving's share could not pay for one first-rung run (priced here at 10^6 s), the probe sweep may
    use all the time left instead of 40% of it, and no fine-tune is tried; otherwise it gets SWEEP_SHARE."""
    import vit_transfer.autoselect.run as auto_run

    plain = auto(str(folder), str(hf_vit_dir), budget_seconds=30, output_dir=tmp_path / "plain",
                 settings=settings(rates_per_method=1, max_epochs=1))
    assert plain.metrics["auto"]["sweep_share"] == auto_run.SWEEP_SHARE and plain.halving.trials
    monkeypatch.setattr(auto_run._Search, "_run_prior", lambda self, steps: 1e6)
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=30, output_dir=tmp_path / "run",
                  settings=settings(rates_per_method=1, max_epochs=1))
    assert result.metrics["auto"]["sweep_share"] == 1.0
    assert result.chosen == "probe" and result.halving.trials == []
    # the run says why no fine-tune ran, and what budget would let the first rung try every candidate
    note = result.metrics["auto"]["short_budget"]
    assert note.startswith("No fine-tune was tried: one first-rung run") and "about 1000000 s" in note
    assert note in (tmp_path / "run" / "leaderboard.md").read_text()


def test_auto_says_when_the_winner_could_not_be_retrained(hf_vit_dir, folder, tmp_path, monkeypatch):
    """Fine-tunes ran, but the winner's retraining was priced beyond the time left: the note names it."""
    import vit_transfer.autoselect.run as auto_run

    monkeypatch.setattr(auto_run._Search, "_cost_model", lambda self, winner: (0.0, 1e6))  # a step: 10^6 s
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=30, output_dir=tmp_path / "run",
                  settings=settings(rates_per_method=1, max_epochs=1))
    assert result.halving.trials and result.chosen == "probe"
    note = result.metrics["auto"]["short_budget"]
    assert note.startswith(f"The halving's best, {result.halving.winner.label}") and "could not be retrained" in note
    assert note in (tmp_path / "run" / "leaderboard.md").read_text()


def test_lp_ft_candidates_start_from_the_sweeps_best_probe(hf_vit_dir, folder, tmp_path, monkeypatch):
    """LP-FT's head reads the sweep's best configuration (pooling, blocks) and starts from its probe, so its start
    is the best probe, not the class-token one; the other methods keep the stock head."""
    import vit_transfer.autoselect.run as auto_run

    made = []

    def recording(run, candidate, *args, **kwargs):
        recipe = real(run, candidate, *args, **kwargs)
        made.append((candidate.method, recipe.model.pooling, recipe.model.head_last_n, recipe.model.head_init))
        return recipe

    real = auto_run.candidate_recipe
    monkeypatch.setattr(auto_run, "candidate_recipe", recording)
    result = auto(str(folder), str(hf_vit_dir), budget_seconds=60, output_dir=tmp_path / "run",
                  settings=settings(methods=("lp-ft", "head"), rates_per_method=1, max_epochs=1))
    best = result.sweep.best
    assert {m for m, *_ in made} == {"lp-ft", "head"}
    assert all(entry == ("lp-ft", best.pooling, best.last_n, "probe") for entry in made if entry[0] == "lp-ft")
    assert all(entry[1:] == (None, None, "zeros") for entry in made if entry[0] == "head")
