"""WiSE-FT (``train.wise_ft``): the fine-tune interpolated with its start, alpha chosen on validation."""

from __future__ import annotations

import json

import pytest
import torch

from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit
from vit_transfer.training import load_train_recipe, train
from vit_transfer.training.wise_ft import interpolate_weights

from test_train_loop import images, one_thread  # noqa: F401  (the same fixtures)
from test_train_run import write_recipe



def test_interpolation_equals_its_two_ends_exactly_and_the_mean_halfway():
    start = {"w": torch.randn(3, 4), "b": torch.randn(4), "n": torch.tensor([7])}
    end = {"w": torch.randn(3, 4), "b": torch.randn(4), "n": torch.tensor([9])}
    at0, at1, half = (interpolate_weights(start, end, a) for a in (0.0, 1.0, 0.5))
    for name in ("w", "b"):
        assert torch.equal(at0[name], start[name]) and torch.equal(at1[name], end[name])
        torch.testing.assert_close(half[name], (start[name] + end[name]) / 2)
    assert at0["n"].item() == 9  # integer tensors are not interpolated: they come from the end


def run(tmp_path, base, images, alphas, method="full", **extra):
    path = write_recipe(tmp_path / f"r{len(alphas)}.yaml", base, images, tmp_path / f"run{alphas}", method=method,
                        optim={"name": "adamw", "lr": 0.01},
                        train={"max_steps": 8, "wise_ft": True, "wise_ft_alphas": list(alphas), **extra})
    return train(load_train_recipe(path))


def test_wise_ft_at_alpha_0_is_the_start_and_at_1_the_fine_tune(tmp_path, images, hf_vit_dir):
    start = load_vit(hf_vit_dir, num_labels=3, id2label={0: "class_0", 1: "class_1", 2: "class_2"}).state_dict()
    at0 = run(tmp_path, hf_vit_dir, images, [0.0])
    for name, value in at0.model.state_dict().items():
        assert torch.equal(value, start[name]), name
    plain = run(tmp_path, hf_vit_dir, images, [1.0]).model.state_dict()
    no_wise = train(load_train_recipe(write_recipe(tmp_path / "n.yaml", hf_vit_dir, images, tmp_path / "plain",
                                                   optim={"name": "adamw", "lr": 0.01}, train={"max_steps": 8})))
    for name, value in no_wise.model.state_dict().items():
        assert torch.equal(plain[name], value), name


def test_wise_ft_picks_alpha_on_validation_and_saves_a_stock_model(tmp_path, images, hf_vit_dir):
    from transformers import AutoModelForImageClassification

    alphas = [0.0, 0.5, 1.0]
    result = run(tmp_path, hf_vit_dir, images, alphas, method="lora")
    m = result.metrics
    curve = {c["alpha"]: c for c in m["wise_ft_curve"]}
    assert sorted(curve) == alphas and m["wise_ft_alpha"] in alphas
    best = max(curve.values(), key=lambda c: (c["top1"], -c["loss"], c["alpha"]))
    assert m["wise_ft_alpha"] == best["alpha"] and m["eval_top1"] == best["top1"]
    assert m["finetuned_eval_top1"] == curve[1.0]["top1"]  # alpha 1 is the fine-tune itself
    out = result.output_dir
    assert not (out / "adapter").exists()  # the interpolation has no adapter form
    assert json.loads((out / "metrics.json").read_text())["wise_ft_alpha"] == m["wise_ft_alpha"]
    stock = AutoModelForImageClassification.from_pretrained(out / "model").eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = result.model.eval()(x)
        torch.testing.assert_close(stock(pixel_values=x).logits, expected, atol=1e-5, rtol=1e-5)
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert report["top1"] == m["test_top1"]  # the test split scored once, on the interpolated model


def test_wise_ft_refuses_a_method_without_a_plain_form(tmp_path, images, hf_vit_dir):
    with pytest.raises(ConfigError, match="train.wise_ft.*'vpt'"):
        run(tmp_path, hf_vit_dir, images, [0.5], method="vpt")


def test_wise_ft_without_a_validation_split_is_a_clear_error(tmp_path, images, hf_vit_dir):
    path = write_recipe(tmp_path / "r.yaml", hf_vit_dir, images, tmp_path / "run", data={"val_fraction": 0.0},
                        train={"max_steps": 2, "wise_ft": True})
    with pytest.raises(ConfigError, match="train.wise_ft chooses its alpha on the validation split"):
        train(load_train_recipe(path))
    assert not (tmp_path / "run" / "model").exists()
