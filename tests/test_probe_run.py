"""The probe end to end: library API on digits, the saved classifier, the CLI and its cache."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from vit_transfer import load_vit
from vit_transfer.data import DataConfig, build_transform, load_image_datasets
from vit_transfer.probe import FeatureCache, ProbeConfig, probe_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Probes do thousands of tiny matmuls: on a busy 2-core box, OpenMP barriers cost more than the math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """A small slice of sklearn digits: hard enough for a random tiny ViT that accuracy is not 0 or 1."""
    return load_image_datasets(DataConfig(source="sklearn:digits", max_train_samples=300, max_eval_samples=60,
                                          max_test_samples=120, num_workers=0))


def classify(model, dataset) -> float:
    """Accuracy of ``model`` as a plain classifier on ``dataset`` (eval transform, no probe code)."""
    transform = build_transform(model.preprocessing, train=False)
    images, labels = zip(*[(transform(img), y) for img, y in (dataset[i] for i in range(len(dataset)))])
    model.eval()
    with torch.no_grad():
        predictions = model(torch.stack(images)).argmax(1)
    return float((predictions == torch.tensor(labels)).float().mean())


@pytest.mark.parametrize("kind,pooling", [("hf", "cls"), ("timm", "cls+mean")])
def test_saved_classifier_reproduces_probe_accuracy(tmp_path, digits, hf_vit_dir, timm_vit_dir, kind, pooling):
    model = load_vit(hf_vit_dir if kind == "hf" else timm_vit_dir)
    # fp32 like the fp32 check below (auto is bf16 on a CPU with bf16 units: vit_transfer.precision)
    config = ProbeConfig(pooling=pooling, cache=False, shots=[1, 5], c_steps=6, c_refine_steps=2, precision="fp32")
    result = probe_model(model, digits, config, output_dir=tmp_path, progress=False)

    lin = result.linear
    assert (lin.selection_split, lin.report_split, lin.refit_on) == ("eval", "test", ["train", "eval"])
    assert 0.3 < lin.top1 < 1.0  # random tiny backbone: well above chance (0.1), not perfect
    assert lin.top1 <= lin.top5
    assert [s.shots for s in result.fewshot] == [1, 5] and result.fewshot_split == "test"
    assert result.samples == {"train": 300, "eval": 60, "test": 120}
    assert result.cache == {"train": "off", "eval": "off", "test": "off"}

    reloaded = load_vit(tmp_path / "model")
    assert reloaded.num_labels == 10 and reloaded.id2label == digits.id2label
    assert abs(classify(reloaded, digits.test) - lin.top1) <= 1 / 120 + 1e-9  # at most one image apart
    saved = json.loads((tmp_path / "probe_results.json").read_text())
    assert saved["linear"]["top1"] == lin.top1 and saved["linear"]["C"] == lin.C
    assert set(saved["fewshot"]) == {"1", "5"} and saved["feature_dim"] == model.feature_dim(pooling)


def test_without_test_split_C_is_chosen_on_train_and_reported_on_eval(digits, hf_vit_dir):
    from dataclasses import replace

    no_test = replace(digits, test=None)
    result = probe_model(load_vit(hf_vit_dir), no_test, ProbeConfig(cache=False, fewshot=False, c_steps=4,
                                                                    c_refine_steps=0), progress=False)
    assert result.linear.report_split == "eval" and result.linear.refit_on == ["train"]
    assert result.linear.selection_split.startswith("train")
    assert result.fewshot == [] and "test" not in result.samples


def test_last_n_above_one_keeps_probe_weights_but_no_model(tmp_path, digits, hf_vit_dir):
    config = ProbeConfig(last_n=2, cache=False, fewshot=False, c_steps=3, c_refine_steps=0)
    result = probe_model(load_vit(hf_vit_dir), digits, config, output_dir=tmp_path, progress=False)
    assert result.feature_dim == 64 and result.model_dir is None
    assert not (tmp_path / "model").exists() and (tmp_path / "linear_head.safetensors").is_file()
    assert any("last 2 blocks" in note for note in result.notes)


def write_recipe(path, model_dir, image_folder, out, cache):
    path.write_text(yaml.safe_dump({
        "model": {"source": str(model_dir)},
        "data": {"source": str(image_folder), "num_workers": 0},
        "probe": {"cache_dir": str(cache), "shots": [1, 5], "c_steps": 4, "c_refine_steps": 0, "batch_size": 8},
        "output_dir": str(out),
    }))
    return path


def test_cli_end_to_end_then_cache_hit(tmp_path, timm_vit_dir, image_folder, monkeypatch, capsys):
    from vit_transfer.cli import main
    from vit_transfer.probe import features as features_module

    recipe = write_recipe(tmp_path / "probe.yaml", timm_vit_dir, image_folder, tmp_path / "out", tmp_path / "cache")
    assert main(["probe", str(recipe), "probe.pooling=mean"]) == 0
    first = json.loads((tmp_path / "out" / "probe_results.json").read_text())
    assert first["cache"] == {"train": "miss", "eval": "miss", "test": "miss"}
    assert first["samples"] == {"train": 21, "eval": 3, "test": 12} and first["pooling"] == "mean"
    assert first["linear"]["top1"] == 1.0  # the image folder's classes differ by colour
    assert "Linear probe" in capsys.readouterr().out
    assert yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())["probe"]["pooling"] == "mean"
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 3

    def no_extraction(*args, **kwargs):
        raise AssertionError("the backbone ran although every split was cached")

    monkeypatch.setattr(features_module, "extract_features", no_extraction)
    assert main(["probe", str(recipe), "probe.pooling=mean"]) == 0
    second = json.loads((tmp_path / "out" / "probe_results.json").read_text())
    assert second["cache"] == {"train": "hit", "eval": "hit", "test": "hit"}
    assert second["linear"] == first["linear"] and second["fewshot"] == first["fewshot"]

    monkeypatch.undo()
    assert main(["probe", str(recipe), "--no-cache", "--output-dir", str(tmp_path / "out2")]) == 0
    third = json.loads((tmp_path / "out2" / "probe_results.json").read_text())
    assert third["cache"] == {"train": "off", "eval": "off", "test": "off"} and third["pooling"] == "cls"


def test_cli_bad_recipe_key_is_a_clear_error(tmp_path, capsys):
    from vit_transfer.cli import main

    assert main(["probe", "probe.pooling=max"]) == 2
    assert "probe.pooling" in capsys.readouterr().err
    assert main(["probe", "probe.shot=[1]"]) == 2
    assert "probe.shots" in capsys.readouterr().err  # "did you mean"


def test_cache_counts_hits_through_probe_model(tmp_path, digits, hf_vit_dir):
    cache = FeatureCache(tmp_path)
    config = ProbeConfig(fewshot=False, c_grid=[1.0])
    probe_model(load_vit(hf_vit_dir), digits, config, cache=cache, progress=False)
    again = probe_model(load_vit(hf_vit_dir), digits, config, cache=cache, progress=False)
    assert (cache.misses, cache.hits) == (3, 3) and again.cache_hits == 3
    resized = probe_model(load_vit(hf_vit_dir, image_size=48), digits, config, cache=cache, progress=False)
    assert resized.cache_hits == 0 and cache.misses == 6
