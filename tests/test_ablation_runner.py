"""benchmarks/pos_embed_ablation.py runs in resumable chunks: finished rows are skipped, unfinished runs resume in
their own folder, a malformed results line stops it by name, and --max-minutes ends it after the run in progress."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ablation():
    return load_benchmark("pos_embed_ablation")


class FakeTraining:
    """Stands in for ``train``: records each call, advances a fake clock by ``minutes``, scores by seed."""

    def __init__(self, minutes: float = 1.0):
        self.calls: list[tuple[str, int, Path]] = []
        self.now, self.minutes = 0.0, minutes

    def clock(self) -> float:
        return self.now

    def __call__(self, variant, seed, args, run_dir):
        self.calls.append((variant, seed, run_dir))
        self.now += 60 * self.minutes
        return {"test_top1": 0.80 + seed / 100, "eval_top1": 0.81, "steps": 666, "test_examples": 10_000,
                "resumed_from": None}


def no_images():
    raise AssertionError("no model was saved, so nothing should be inspected")


def row(ablation, variant, seed, top1, **budget_args):
    args = ablation.build_parser().parse_args([f"--{k.replace('_', '-')}={v}" for k, v in budget_args.items()])
    return {"variant": variant, "seed": seed, "test_top1": top1, "eval_top1": top1, "steps": 666, "seconds": 500.0,
            "machine": "test", "commit": "abc", "budget": ablation.budget_of(args)}


def write_rows(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def run(ablation, tmp_path, fake, *extra):
    argv = ["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), *extra]
    return ablation.main(argv, train_fn=fake, images_fn=no_images, clock=fake.clock)


def test_finished_rows_are_skipped_and_an_unfinished_run_resumes_in_its_folder(ablation, tmp_path):
    rows_path = tmp_path / "out" / "pos_embed_ablation.jsonl"
    write_rows(rows_path, [row(ablation, "learned", 0, 0.80), row(ablation, "learned", 1, 0.82),
                           row(ablation, "none", 0, 0.70, epochs=1)])  # another budget: does not count as done
    args = ablation.build_parser().parse_args([])
    unfinished = ablation.run_dir_for(tmp_path / "work", ablation.budget_of(args), "learned", 2)
    (unfinished / "checkpoints" / "step_00000100").mkdir(parents=True)  # a run stopped mid-way
    fake = FakeTraining()
    assert run(ablation, tmp_path, fake, "--variants", "learned", "none", "--seeds", "0", "1", "2") == 0
    assert [(v, s) for v, s, _ in fake.calls] == [("learned", 2), ("none", 0), ("none", 1), ("none", 2)]
    assert fake.calls[0][2] == unfinished  # the stopped run's own folder: its checkpoints are resumed from there
    assert not (unfinished / "checkpoints").exists()  # finished: its checkpoints go, its row stays
    rows = ablation.read_rows(rows_path)
    assert [(r["variant"], r["seed"]) for r in rows[3:]] == [("learned", 2), ("none", 0), ("none", 1), ("none", 2)]
    assert rows[3]["test_top1"] == pytest.approx(0.82) and rows[3]["seconds"] == 60.0
    assert {"machine", "commit", "steps", "eval_top1"} <= set(rows[3])

    page = (tmp_path / "out" / "pos_embed_ablation.md").read_text()
    assert "| learned | 81.33% +- 1.15 | 81.00% | 3 (0, 1, 2) |" in page  # 0.80, 0.82, 0.82 rebuilt from all rows
    assert "| none | 81.00% +- 1.00 | 81.00% | 3 (0, 1, 2) |" in page  # the other budget's 70% left out
    assert "1 row(s) of another budget left out" in page
    summary = json.loads((tmp_path / "out" / "pos_embed_ablation.json").read_text())["summary"]
    assert summary["learned"]["runs"] == 3 and summary["learned"]["mean"] == pytest.approx(0.8133, abs=1e-4)

    again = FakeTraining()
    run(ablation, tmp_path, again, "--variants", "learned", "none", "--seeds", "0", "1", "2")
    assert again.calls == []  # everything is in: a restart trains nothing and rebuilds the same page
    assert (tmp_path / "out" / "pos_embed_ablation.md").read_text() == page


@pytest.mark.parametrize("bad, message", [
    ('{"variant": "learned", "seed": 1, "test_top1": 0.8', "line 2: not JSON"),
    ('["learned", 1]', "line 2: a list, not a JSON object"),
    ('{"variant": "learned", "seed": 1, "test_top1": 0.8}', "line 2: missing eval_top1, steps, seconds, machine"),
])
def test_a_malformed_results_line_is_an_error_naming_it(ablation, tmp_path, bad, message):
    rows_path = tmp_path / "out" / "pos_embed_ablation.jsonl"
    write_rows(rows_path, [row(ablation, "learned", 0, 0.80), bad, row(ablation, "learned", 2, 0.80)])
    before = rows_path.read_text()
    fake = FakeTraining()
    with pytest.raises(ablation.ResultsFileError, match=message) as caught:
        run(ablation, tmp_path, fake, "--variants", "learned", "--seeds", "0", "1", "2")
    assert str(rows_path) in str(caught.value)
    assert fake.calls == [] and rows_path.read_text() == before  # nothing trained, nothing dropped or rewritten


def test_max_minutes_stops_after_the_run_in_progress(ablation, tmp_path):
    fake = FakeTraining(minutes=6)
    run(ablation, tmp_path, fake, "--variants", "sincos_2d", "--seeds", "0", "1", "2", "--max-minutes", "10")
    # run 1: minutes 0-6; run 2 starts at 6 < 10 and is finished (to 12); run 3 would start at 12: not started
    assert [s for _, s, _ in fake.calls] == [0, 1]
    rows = ablation.read_rows(tmp_path / "out" / "pos_embed_ablation.jsonl")
    assert [(r["variant"], r["seed"], r["seconds"]) for r in rows] == [("sincos_2d", 0, 360.0), ("sincos_2d", 1, 360.0)]
    assert "| sincos_2d | 80.50% +- 0.71 |" in (tmp_path / "out" / "pos_embed_ablation.md").read_text()
    later = FakeTraining(minutes=6)
    run(ablation, tmp_path, later, "--variants", "sincos_2d", "--seeds", "0", "1", "2", "--max-minutes", "10")
    assert [s for _, s, _ in later.calls] == [2]  # the next chunk picks up the rest


def test_each_run_resumes_its_own_checkpoints_with_the_budget_of_the_call(ablation, tmp_path):
    args = ablation.build_parser().parse_args(["--epochs", "2", "--hidden-size", "64", "--checkpoint-every", "50"])
    recipe = ablation.recipe_for("relative", 1, args, tmp_path / "relative-seed1")
    assert recipe.train.resume_from_checkpoint == "latest" and recipe.train.checkpoint_every == 50
    assert Path(recipe.output.dir) == tmp_path / "relative-seed1" and not recipe.output.overwrite
    assert (recipe.model.scratch.pos_embed, recipe.model.scratch.hidden_size, recipe.train.epochs,
            recipe.train.seed) == ("relative", 64, 2.0, 1)
    assert ablation.budget_of(args)["hidden_size"] == 64  # rows remember the size they were trained at


def test_figures_come_from_the_saved_models_and_say_which_have_no_table(ablation, tmp_path):
    import numpy as np
    from PIL import Image

    from vit_transfer.models.scratch import ArchitectureConfig, create_vit

    tiny = dict(image_size=16, patch_size=4, hidden_size=16, depth=2, num_heads=2, mlp_dim=32)
    budget = ablation.budget_of(ablation.build_parser().parse_args([]))
    for variant in ("none", "learned", "relative"):
        create_vit(ArchitectureConfig(pos_embed=variant, **tiny), num_labels=3).save(
            ablation.run_dir_for(tmp_path / "work", budget, variant, 0) / "model")
    write_rows(tmp_path / "out" / "pos_embed_ablation.jsonl",
               [row(ablation, v, s, 0.8) for v in ("none", "learned", "relative") for s in (0, 1)])
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)) for _ in range(2)]
    fake = FakeTraining()
    ablation.main(["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--variants", "none",
                   "learned", "relative", "--seeds", "0", "1"], train_fn=fake, images_fn=lambda: images,
                  clock=fake.clock)
    assert fake.calls == []
    figures = tmp_path / "out" / "pos_embed_ablation"
    assert (figures / "similarity_all.png").is_file() and (figures / "attention_distance_all.png").is_file()
    payload = json.loads((tmp_path / "out" / "pos_embed_ablation.json").read_text())
    assert payload["diagnostics"]["relative"]["absent"] and payload["diagnostics"]["relative"]["locality"] is None
    assert payload["diagnostics"]["none"]["locality"]["locality"] == 0.0  # an all-zero table: similarity 0
    assert len(payload["diagnostics"]["relative"]["attention_distance_per_block"]) == 2
    page = (tmp_path / "out" / "pos_embed_ablation.md").read_text()
    assert "| relative | 80.00% +- 0.00 | 80.00% | 2 (0, 1) | no table |" in page
    assert "| none | 80.00% +- 0.00 | 80.00% | 2 (0, 1) | zero table |" in page
    assert "| learned_2d | not run yet |" in page

    shutil.rmtree(tmp_path / "work")  # another machine: the rows and figures are in the repository, the models not
    ablation.main(["--output", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--variants", "none",
                   "learned", "relative", "--seeds", "0", "1"], train_fn=fake, images_fn=no_images, clock=fake.clock)
    assert (tmp_path / "out" / "pos_embed_ablation.md").read_text() == page  # rebuilt from the kept inspect.json


def test_runs_of_another_budget_live_in_other_folders(ablation, tmp_path):
    three, two = (ablation.budget_of(ablation.build_parser().parse_args(["--epochs", e])) for e in ("3", "2"))
    assert ablation.run_dir_for(tmp_path, three, "learned", 0) != ablation.run_dir_for(tmp_path, two, "learned", 0)
    assert ablation.run_dir_for(tmp_path, three, "learned", 0) == ablation.run_dir_for(tmp_path, dict(three), "learned", 0)
