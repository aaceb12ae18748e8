"""benchmarks/bench_transfer.py: the grid grows only when its pick sits on an edge, the rate is chosen on the mean
validation top-1 over seeds, the page is rebuilt from the rows with the targets checked, and it runs in chunks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bt():
    return load_benchmark("bench_transfer")


def rows_for(lr_scores: dict[float, list[float]]) -> list[dict]:
    """One method's rows: ``{rate: [val top-1 of seed 0, seed 1, ...]}``."""
    return [{"lr": lr, "seed": seed, "val_top1": v} for lr, vals in lr_scores.items() for seed, v in enumerate(vals)]


def test_the_ladder_steps_by_half_decades(bt):
    assert [bt.ladder(x, +1) for x in (0.001, 0.003, 0.01, 0.03, 0.1)] == [0.003, 0.01, 0.03, 0.1, 0.3]
    assert [bt.ladder(x, -1) for x in (0.001, 0.003, 0.01, 0.03, 0.1)] == [0.0003, 0.001, 0.003, 0.01, 0.03]


@pytest.mark.parametrize("scores, grown", [
    ({0.001: 0.9, 0.003: 0.8, 0.01: 0.7, 0.03: 0.6}, [0.0003, 0.001, 0.003, 0.01, 0.03]),  # low edge: one below
    ({0.001: 0.6, 0.003: 0.7, 0.01: 0.8, 0.03: 0.9}, [0.001, 0.003, 0.01, 0.03, 0.1]),  # high edge: one above
    ({0.001: 0.6, 0.003: 0.9, 0.01: 0.8, 0.03: 0.7}, [0.001, 0.003, 0.01, 0.03]),  # interior: unchanged
    ({0.001: 0.8, 0.003: 0.8, 0.01: 0.7, 0.03: 0.7}, [0.0003, 0.001, 0.003, 0.01, 0.03]),  # a tie goes to the lower
    ({0.001: 0.8, 0.003: 0.8, 0.01: 0.8, 0.03: 0.8}, [0.001, 0.003, 0.01, 0.03]),  # flat: no edge, unchanged
])
def test_the_grid_grows_by_one_rung_on_the_side_of_an_edge_pick(bt, scores, grown):
    assert bt.extend_grid([0.001, 0.003, 0.01, 0.03], scores) == grown


def test_the_rate_is_chosen_on_the_mean_over_seeds_not_one_seed(bt):
    # seed 0 alone would pick 0.03 (0.95); over the three seeds 0.01 is better (0.80 vs 0.70)
    rows = rows_for({0.003: [0.60, 0.60, 0.60], 0.01: [0.80, 0.80, 0.80], 0.03: [0.95, 0.60, 0.55]})
    means = bt.mean_val_by_rate(rows, [0, 1, 2])
    assert means == pytest.approx({0.003: 0.60, 0.01: 0.80, 0.03: 0.70})
    assert bt.pick_rate(means) == 0.01
    assert bt.mean_val_by_rate(rows[:-1], [0, 1, 2]) == pytest.approx({0.003: 0.60, 0.01: 0.80})  # 0.03 incomplete


def test_the_plan_runs_the_base_grid_then_grows_it_once(bt):
    base, seeds = [0.001, 0.003, 0.01], [0, 1]
    grid, missing = bt.plan_grid(base, rows_for({0.001: [0.5, 0.5], 0.003: [0.6]}), seeds)
    assert grid == base and missing == [(0.003, 1), (0.01, 0), (0.01, 1)]  # the base grid first, nothing grows yet
    edge = rows_for({0.001: [0.5, 0.5], 0.003: [0.6, 0.6], 0.01: [0.7, 0.7]})
    assert bt.plan_grid(base, edge, seeds) == ([0.001, 0.003, 0.01, 0.03], [(0.03, 0), (0.03, 1)])
    assert bt.plan_grid(base, edge, seeds, max_extensions=0) == (base, [])
    # the new rung is better still: the pick stays on the edge, but the grid grows only once
    done = edge + rows_for({0.03: [0.8, 0.8]})
    assert bt.plan_grid(base, done, seeds) == ([0.001, 0.003, 0.01, 0.03], [])
    interior = rows_for({0.001: [0.5, 0.5], 0.003: [0.9, 0.9], 0.01: [0.7, 0.7]})
    assert bt.plan_grid(base, interior, seeds) == (base, [])


# --- the whole script on a fake runner: chunks, the rebuilt page, the targets ------------------------------------
VAL = {  # (method, rate) -> val top-1 per seed; test = val - 0.02 + 0.02 * seed
    ("LP-FT", 0.001): [0.80, 0.80], ("LP-FT", 0.003): [0.90, 0.90], ("LP-FT", 0.01): [0.85, 0.85],
    ("LP-FT", 0.03): [0.70, 0.70],
    # head-only: seed 0 alone would pick 0.03; the mean picks 0.1, an edge: 0.3 is added and is worse
    ("head-only", 0.003): [0.50, 0.50], ("head-only", 0.01): [0.60, 0.60], ("head-only", 0.03): [0.95, 0.55],
    ("head-only", 0.1): [0.80, 0.80], ("head-only", 0.3): [0.40, 0.40],
    ("class-token probe", None): [0.80, 0.80], ("best probe sweep", None): [0.88, 0.88], ("auto", 60.0): [0.92, 0.92],
}
ARGV = ["--settings", "lfw", "--seeds", "0", "1", "--methods", "LP-FT", "head-only", "--budgets", "60"]


class FakeRunner:
    """Stands in for the real runs: scores from ``VAL``, one minute of a fake clock per unit."""

    def __init__(self, bt, argv):
        self.bt, self.args, self.now, self.units = bt, bt.build_parser().parse_args(argv), 0.0, []

    def clock(self) -> float:
        return self.now

    def __call__(self, unit) -> dict:
        self.units.append(unit)
        self.now += 60
        val = VAL[(unit.method, unit.lr)][unit.seed]
        row = {"kind": unit.kind, "setting": unit.setting, "seed": unit.seed, "method": unit.method, "lr": unit.lr,
               "val_top1": val, "test_top1": round(val - 0.02 + 0.02 * unit.seed, 4), "seconds": 10.0 + unit.seed,
               "machine": "test", "commit": "abc", "protocol": self.bt.protocol(self.args, unit.setting, unit.kind,
                                                                          unit.method)}
        if unit.method == "LP-FT":
            row["probe_val_top1"] = 0.80  # its step-0 evaluation: the class-token probe's validation top-1
            row["returned"] = "start" if unit.seed == 1 else "fine-tune"  # train.keep_start_within_noise
        if unit.kind == "probe":
            row.update(pooling="cls", last_n=1, C=0.1)
        if unit.kind == "auto":
            row.update(chosen="probe", elapsed_seconds=63.0, budget_seconds=unit.lr)
        return row


def test_chunks_rebuild_the_page_from_all_rows_and_check_the_targets(bt, tmp_path):
    argv = ARGV + ["--output", str(tmp_path)]
    first = FakeRunner(bt, argv)
    assert bt.main(argv + ["--max-minutes", "5"], runner=first, clock=first.clock) == 0
    assert [str(u) for u in first.units] == [  # the probes first; a unit starting at minute 5 is not started
        "lfw seed 0 class-token probe", "lfw seed 1 class-token probe", "lfw seed 0 best probe sweep",
        "lfw seed 1 best probe sweep", "lfw seed 0 LP-FT lr 0.001"]
    page = (tmp_path / "transfer.md").read_text()
    assert "5 of 22 runs done." in page  # 2 x 4 rates x 2 methods + 4 probes + 2 auto runs, before any growth
    assert "| LP-FT | - (0.001: -, 0.003: -, 0.01: -, 0.03: -) | - | - | - |" in page
    assert "LP-FT >= class-token probe on lfw: waiting for runs." in page

    no_auto = FakeRunner(bt, argv)  # --no-auto: everything but auto (wall-clock budgeted: run alone, later)
    assert bt.plan(no_auto.args, bt.read_rows(tmp_path / "transfer.jsonl"))[0][-1].kind == "auto"
    plan_without = bt.plan(bt.build_parser().parse_args(argv + ["--no-auto"]), bt.read_rows(tmp_path / "transfer.jsonl"))
    assert {u.kind for u in plan_without[0]} == {"run"} and len(plan_without[0]) == 22 - 5 - 2

    second = FakeRunner(bt, argv)
    bt.main(argv, runner=second, clock=second.clock)
    assert len(second.units) == 24 - 5 and str(second.units[-3]) == "lfw seed 1 head-only lr 0.3"  # the grown rung
    page = (tmp_path / "transfer.md").read_text()
    assert "runs done" not in page
    assert ("| LP-FT | 0.003 (0.001: 80.0, 0.003: 90.0, 0.01: 85.0, 0.03: 70.0) | 90.0 | 89.0 +- 1.4 | 10 |"
            in page)  # test 0.88 and 0.90; seconds 10 and 11 -> 10.5 shown as 10
    assert ("| head-only | 0.1 (0.003: 50.0, 0.01: 60.0, 0.03: 75.0, 0.1: 80.0, 0.3: 40.0) | 80.0 | 79.0 +- 1.4 |"
            in page)
    assert "| class-token probe | cls x1, C 0.1; cls x1, C 0.1 | 80.0 | 79.0 +- 1.4 |" in page
    assert "| auto (60 s) | probe, probe | 92.0 | 91.0 +- 1.4 |" in page
    assert ("- LP-FT >= class-token probe on lfw: yes (test 89.0 vs 79.0; val 90.0 vs 80.0; LP-FT's own probe start: "
            "val 80.0; the start returned (fine-tune within noise) in 1 of 2 runs).") in page
    assert "- auto (60 s) >= best probe sweep on lfw: yes (test 91.0 vs 87.0)." in page
    assert "- auto (60 s) >= best single method - 0.5 on the mean over settings: yes (91.0 vs LP-FT 89.0)." in page
    assert "- auto (60 s) within its budget on lfw: yes (longest run 1.05 x the budget" in page
    rows = bt.read_rows(tmp_path / "transfer.jsonl")
    assert len(rows) == 24 and json.loads((tmp_path / "transfer.json").read_text())["rows"] == rows

    again = FakeRunner(bt, argv)
    bt.main(argv, runner=again, clock=again.clock)
    assert again.units == [] and (tmp_path / "transfer.md").read_text() == page  # nothing left: the same page

    other = FakeRunner(bt, argv + ["--epochs", "3"])  # another protocol: the fine-tunes run again, the rest stays
    bt.main(argv + ["--epochs", "3"], runner=other, clock=other.clock)
    assert {u.kind for u in other.units} == {"run"} and len(other.units) == 18


def test_a_target_missed_says_no(bt, tmp_path):
    argv = ARGV + ["--output", str(tmp_path)]
    runner = FakeRunner(bt, argv)
    bt.main(argv, runner=runner, clock=runner.clock)
    rows = bt.read_rows(tmp_path / "transfer.jsonl")
    for r in rows:  # the class-token probe above LP-FT, auto over its budget
        if r["method"] == "class-token probe":
            r["test_top1"] = 0.95
        if r["kind"] == "auto":
            r["elapsed_seconds"] = 70.0
    (tmp_path / "transfer.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bt.main(argv, runner=runner, clock=runner.clock)
    page = (tmp_path / "transfer.md").read_text()
    assert "- LP-FT >= class-token probe on lfw: NO (test 89.0 vs 95.0;" in page
    assert "- auto (60 s) within its budget on lfw: NO (longest run 1.17 x the budget" in page
    assert "best single method - 0.5 on the mean over settings: NO (91.0 vs class-token probe 95.0)" in page


def test_lp_ft_rows_of_an_older_probe_run_again_and_the_other_rows_stay(bt, tmp_path):
    """LP-FT starts from a probe, so its rows carry the probe's version: rows from before it are re-run, alone."""
    argv = ARGV + ["--output", str(tmp_path)]
    runner = FakeRunner(bt, argv)
    bt.main(argv, runner=runner, clock=runner.clock)
    rows = bt.read_rows(tmp_path / "transfer.jsonl")
    assert all(("probe" in r["protocol"]) == (r["method"] == "LP-FT" or r["kind"] != "run") for r in rows)
    for r in rows:
        if r["method"] == "LP-FT":
            r["protocol"] = {k: v for k, v in r["protocol"].items() if k != "probe"}  # an older row
    (tmp_path / "transfer.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = FakeRunner(bt, argv)
    bt.main(argv, runner=again, clock=again.clock)
    assert {u.method for u in again.units} == {"LP-FT"} and len(again.units) == 8  # 4 rates x 2 seeds


def test_probe_and_auto_rows_of_another_precision_run_again(bt, tmp_path, monkeypatch):
    """The targets compare probes, auto and LP-FT: probe and auto rows measured in bf16 (a CPU with bf16 units)
    are not compared with this machine's fp32 ones; the fine-tunes stay, and the page says which machine did what."""
    argv = ARGV + ["--output", str(tmp_path)]
    monkeypatch.setattr(bt, "precision", lambda: "bf16")
    runner = FakeRunner(bt, argv)
    bt.main(argv, runner=runner, clock=runner.clock)
    assert {r["protocol"].get("precision") for r in bt.read_rows(tmp_path / "transfer.jsonl")} == {"bf16", None}
    monkeypatch.setattr(bt, "precision", lambda: "fp32")
    again = FakeRunner(bt, argv)
    bt.main(argv, runner=again, clock=again.clock)
    assert sorted({u.kind for u in again.units}) == ["auto", "probe"] and len(again.units) == 2 * 2 + 2
    rows = [dict(r, machine="cpu A" if r["kind"] == "run" else "cpu B", precision="fp32")
            for r in bt.read_rows(tmp_path / "transfer.jsonl")]
    assert bt.measured_on(rows) == "LP-FT: cpu A, fp32; auto: cpu B, fp32; other fine-tunes: cpu A, fp32; probes: cpu B, fp32"


def test_a_malformed_row_stops_it_by_line(bt, tmp_path):
    argv = ARGV + ["--output", str(tmp_path)]
    (tmp_path / "transfer.jsonl").write_text('{"kind": "run"}\n')
    runner = FakeRunner(bt, argv)
    with pytest.raises(bt.ResultsFileError, match=r"transfer.jsonl, line 1: missing setting, seed, method"):
        bt.main(argv, runner=runner, clock=runner.clock)
    assert runner.units == []


def test_every_method_reads_the_same_splits_and_the_test_split_is_fixed(bt, tmp_path):
    pytest.importorskip("skimage")
    lfw = bt.SETTINGS["lfw"]
    folders = [bt.write_splits(tmp_path / f"lfw-{seed}", lfw, seed) for seed in (0, 1)]

    def names(folder, split):
        return {p.relative_to(folder / split).as_posix() for p in (folder / split).rglob("*.png")}

    first, second = ({s: names(f, s) for s in ("train", "validation", "test")} for f in folders)
    assert {s: len(v) for s, v in first.items()} == {"train": 120, "validation": 30, "test": 50}
    assert sum(n.startswith("face/") for n in first["validation"]) == 15  # stratified
    assert first["test"] == second["test"] and first["validation"] != second["validation"]
    assert not (first["train"] & first["validation"]) and len(first["train"] | first["validation"]) == 150
    recipe = bt.fine_tune_recipe("LP-FT", 0.01, folders[0], tmp_path / "run", 0, 20, 32)
    assert (recipe.data.source, recipe.train.epochs, recipe.train.max_steps) == (str(folders[0]), 20.0, None)
    assert recipe.model.head_init == "probe" and recipe.schedule.warmup_steps == 60 // 10  # 3 steps an epoch


def test_a_row_the_plan_does_not_recognise_stops_the_chunk_instead_of_looping(bt, tmp_path):
    """A runner whose rows carry another protocol (the plan never counts them as done) fails on the second ask."""
    argv = ARGV + ["--output", str(tmp_path)]
    runner = FakeRunner(bt, argv)

    def stale(unit):
        row = runner(unit)
        row["protocol"] = {**row["protocol"], "probe": "an older probe"}
        return row

    with pytest.raises(RuntimeError, match="lfw seed 0 class-token probe is asked for again after its row"):
        bt.main(argv, runner=stale, clock=runner.clock)
    assert len(bt.read_rows(tmp_path / "transfer.jsonl")) == 1


def test_the_machine_string_says_whether_the_cpu_has_bf16_units(bt, monkeypatch):
    """Rows from a CPU with bf16 units and one without differ ~2.3x in seconds (precision=auto: bf16 or fp32)."""
    import resumable
    import torch

    import vit_transfer.precision as precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "native_bf16", lambda cpu=False: True)
    assert "(bf16 units)" in resumable.machine()
    monkeypatch.setattr(precision, "native_bf16", lambda cpu=False: False)
    assert "(no bf16 units)" in resumable.machine()
