"""What ``train`` promises about its run: it owns its folder, scores the test split once, returns what it saved,
and with ``train.keep_best`` returns its best validation step's weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit
from vit_transfer.training import load_train_recipe, train

from test_train_loop import images, one_thread  # noqa: F401  (the same fixtures)
from test_train_loop import write_recipe as write_sections


def write_recipe(path, source, images, out, method: str = "full", **sections):
    """``test_train_loop.write_recipe`` with the top-level ``method``."""
    import yaml

    path = write_sections(path, source, images, out, **sections)
    recipe = yaml.safe_load(path.read_text())
    recipe["method"] = method
    path.write_text(yaml.safe_dump(recipe))
    return path



def test_a_fresh_run_refuses_a_finished_runs_folder_and_overwrite_clears_it(tmp_path, images, hf_vit_dir):
    out = tmp_path / "run"
    lora = write_recipe(tmp_path / "lora.yaml", hf_vit_dir, images, out, method="lora", train={"max_steps": 2})
    train(load_train_recipe(lora))
    assert (out / "adapter").is_dir() and (out / "evaluation").is_dir()

    full = write_recipe(tmp_path / "full.yaml", hf_vit_dir, images, out, train={"max_steps": 2})
    with pytest.raises(ConfigError, match=r"earlier run \(.*adapter.*\).*output\.overwrite=true"):
        train(load_train_recipe(full))
    assert (out / "adapter").is_dir()  # refused before touching anything

    # overwrite, and this time without a test split: neither the old adapter nor the old test report survives
    train(load_train_recipe(full, ["output.overwrite=true", "data.test_split=none"]))
    assert not (out / "adapter").exists() and not (out / "evaluation").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test_top1" not in metrics and metrics["steps"] == 2
    assert json.loads((out / "run_info.json").read_text())["method"] == "full"


def test_the_test_split_is_scored_once_and_both_files_hold_one_number(tmp_path, images, hf_vit_dir, monkeypatch):
    import importlib

    scoring = importlib.import_module("vit_transfer.inference.scoring")
    evaluate_module = importlib.import_module("vit_transfer.inference.evaluate")
    calls = []
    real = scoring.score_dataset

    def counting(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_dataset", counting)
    monkeypatch.setattr(evaluate_module, "score_dataset", counting)
    out = tmp_path / "run"
    # the workers resize to 24 px and the model up to 32 px on its device: a transform the report must share
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, out, data={"host_image_size": 24},
                        train={"max_steps": 6})
    result = train(load_train_recipe(path))
    assert calls == ["test"]
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    for key in ("top1", "top5", "loss"):
        assert metrics[f"test_{key}"] == report[key] == result.metrics[f"test_{key}"]
    assert metrics["test_examples"] == report["num_examples"] == 24


@pytest.mark.parametrize("method", ["lora", "ssf"])
def test_export_leaves_the_returned_model_as_trained_and_equal_to_the_saved_one(tmp_path, images, hf_vit_dir, method):
    out = tmp_path / "run"
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, out, method=method, train={"max_steps": 3})
    result = train(load_train_recipe(path))
    if method == "lora":  # the adapter is still on the returned model (export merged a copy)
        assert result.adapter is not None
        assert any("lora_A" in n for n, _ in result.model.named_parameters())
    else:
        assert any("ssf" in n.lower() or "scale" in n for n, _ in result.model.named_parameters())
    from vit_transfer.inference.loading import load_trained_model

    saved = load_trained_model(out).eval()  # the merged model/ or, unmerged, the base + adapter/
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(saved(x), result.model.eval()(x), atol=1e-5, rtol=1e-5)


def test_keep_best_returns_the_weights_of_the_best_validation_step(tmp_path, images, hf_vit_dir):
    out = tmp_path / "run"
    # SGD at a rate that overshoots: validation top-1 goes up and down, so the best is rarely the last step
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, out, optim={"name": "sgd", "lr": 0.8},
                        schedule={"name": "constant", "warmup_steps": 0},
                        train={"max_steps": 12, "checkpoint_every": 2, "keep_checkpoints": 10},
                        eval={"every_steps": 2})
    result = train(load_train_recipe(path))
    m = result.metrics
    curve = m["eval_curve"]
    assert [e["step"] for e in curve] == [0, 2, 4, 6, 8, 10, 12]
    # best: highest top-1, then lowest loss; max() keeps the first of full ties, the earlier step
    best = max(curve, key=lambda e: (e["top1"], -e["loss"]))
    assert m["best_step"] == best["step"]
    assert m["eval_top1"] == best["top1"] and m["eval_loss"] == best["loss"]
    assert json.loads((out / "metrics.json").read_text())["best_step"] == best["step"]

    # oracle: the weights the step's own checkpoint saved (step 0 has none: then the starting weights)
    if best["step"] == 0:
        expected = load_vit(hf_vit_dir, num_labels=3).state_dict()
    else:
        expected = load_file(str(out / "checkpoints" / f"step_{best['step']:08d}" / "model.safetensors"))
    returned = result.model.state_dict()
    for name, value in expected.items():
        assert torch.equal(returned[name], value), name
    saved = load_vit(out / "model").state_dict()
    for name, value in returned.items():
        assert torch.equal(saved[name], value), name


def test_keep_best_is_never_below_the_start_and_survives_a_resume(tmp_path, images, hf_vit_dir):
    from test_train_loop import Crash

    sections = dict(optim={"name": "sgd", "lr": 0.8}, schedule={"name": "constant", "warmup_steps": 0},
                    train={"max_steps": 10, "checkpoint_every": 2, "keep_checkpoints": 2}, eval={"every_steps": 2})
    whole = train(load_train_recipe(write_recipe(tmp_path / "a.yaml", hf_vit_dir, images, tmp_path / "a", **sections)))
    assert whole.metrics["eval_top1"] >= whole.metrics["eval_curve"][0]["top1"]

    def crash(state):
        if state.step == 7:
            raise Crash("killed at step 7")

    path = write_recipe(tmp_path / "b.yaml", hf_vit_dir, images, tmp_path / "b", **sections)
    with pytest.raises(Crash):
        train(load_train_recipe(path), hooks=[crash])
    resumed = train(load_train_recipe(path, ["train.resume_from_checkpoint=latest"]))
    assert resumed.metrics["best_step"] == whole.metrics["best_step"]
    assert resumed.metrics["eval_curve"] == whole.metrics["eval_curve"]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_early_stopping_stops_after_patience_evaluations_without_a_better_one(tmp_path, images, hf_vit_dir):
    out = tmp_path / "run"
    # a rate of 0: nothing ever improves on step 0, so the run stops at the second evaluation after it
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, out, optim={"name": "sgd", "lr": 1e-12},
                        train={"max_steps": 30, "early_stopping_patience": 2}, eval={"every_steps": 3})
    m = train(load_train_recipe(path)).metrics
    assert m["stopped_early"] is True and m["steps"] == 6 and m["best_step"] == 0
    assert [e["step"] for e in m["eval_curve"]] == [0, 3, 6]

    # killed right after the checkpoint of the step that stopped it: the resumed run stays stopped
    from test_train_loop import Crash

    def crash(state):
        if state.step == 6:
            raise Crash("killed at step 6")

    path = write_recipe(tmp_path / "c.yaml", hf_vit_dir, images, tmp_path / "crashed",
                        optim={"name": "sgd", "lr": 1e-12}, eval={"every_steps": 3},
                        train={"max_steps": 30, "early_stopping_patience": 2, "checkpoint_every": 3})
    with pytest.raises(Crash):
        train(load_train_recipe(path), hooks=[crash])
    resumed = train(load_train_recipe(path, ["train.resume_from_checkpoint=latest"])).metrics
    assert resumed["stopped_early"] is True and resumed["steps"] == 6
    assert resumed["eval_curve"] == m["eval_curve"]


def test_keep_best_without_a_validation_split_is_a_clear_error(tmp_path, images, hf_vit_dir):
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, tmp_path / "run",
                        data={"val_fraction": 0.0}, train={"max_steps": 2, "keep_best": True})
    with pytest.raises(ConfigError, match="train.keep_best needs a validation split"):
        train(load_train_recipe(path))
    # the default (null) simply turns it off there
    m = train(load_train_recipe(path, ["train.keep_best=null"])).metrics
    assert "best_step" not in m and "eval_top1" not in m
