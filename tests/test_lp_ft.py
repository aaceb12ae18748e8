"""LP-FT (``model.head_init: probe``): the fine-tune starts from the fitted linear probe."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from vit_transfer.data import DataConfig, build_transform, load_image_datasets, make_dataloader
from vit_transfer.models import load_vit
from vit_transfer.testing import write_image_folder
from vit_transfer.training import load_train_recipe, train
from vit_transfer.runtime.accelerator import make_accelerator
from vit_transfer.runtime.evaluation import evaluate_model
from vit_transfer.training.lp_ft import init_head_from_probe


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("colours"), per_class=10)


def eval_pixels(model, dataset) -> torch.Tensor:
    transform = build_transform(model.preprocessing, train=False)
    return torch.stack([transform(dataset[i][0]) for i in range(len(dataset))])


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_the_starting_head_is_the_probe(bases, images, ecosystem):
    data = load_image_datasets(DataConfig(source=str(images), val_fraction=0.25, num_workers=0))
    model = load_vit(bases[ecosystem], num_labels=data.num_labels, id2label=data.id2label, pooling="mean")
    acc = make_accelerator("no", True, "none", None, 1)
    probe = init_head_from_probe(model, data, batch_size=8, accelerator=acc, progress=False)

    # independent oracle: the same C search (train to fit, validation to choose) on features taken straight from
    # forward_features; the probe is the search's fit at the chosen C
    from vit_transfer.probe import ProbeConfig, select_C

    def features_and_labels(split):
        pixels = eval_pixels(model, split)
        with torch.no_grad():
            feats = model.eval().forward_features(pixels, pooling="mean")
        return pixels, feats, torch.tensor([split[i][1] for i in range(len(split))])

    _, train_feats, train_y = features_and_labels(data.train)
    val_x, val_feats, val_y = features_and_labels(data.eval)
    cfg = ProbeConfig()
    oracle = select_C(train_feats, train_y, val_feats, val_y, data.num_labels, grid=cfg.c_grid,
                      exponents=tuple(cfg.c_exponents), steps=cfg.c_steps, refine_steps=cfg.c_refine_steps,
                      max_iter=cfg.max_iter).best_fit
    assert probe.C == pytest.approx(oracle.C)
    weight, bias = oracle.folded()
    torch.testing.assert_close(probe.weight, weight, atol=1e-4, rtol=1e-4)

    # the model's logits before any step are the probe's predictions
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(val_x), oracle.logits(model.forward_features(val_x, pooling="mean")),
                                   atol=1e-4, rtol=1e-4)
    # and its accuracy on the eval split is the probe's recorded val accuracy
    loader = make_dataloader(data.eval, build_transform(model.preprocessing, False), 8, shuffle=False)
    assert evaluate_model(model, loader, acc)["top1"] == pytest.approx(probe.val_top1)
    assert probe.val_top1 > 0.5  # colours are linearly separable: the probe is a real one


def test_an_lp_ft_run_records_the_probe_and_starts_from_it(tmp_path, bases, images):
    out = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(bases["timm"]), "head_init": "probe"},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": 0.25},
        "augment": {"crop": "resize", "hflip": False},
        "method": "lora", "lora": {"r": 2, "merge": True},
        "optim": {"name": "sgd", "lr": 1e-9},  # the head barely moves: the run ends where it started
        "train": {"max_steps": 1, "batch_size": 6},
        "output": {"dir": str(out), "log_with": "none"},
    }))
    result = train(load_train_recipe(tmp_path / "r.yaml"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["probe_val_top1"] > 0.5 and metrics["probe_C"] > 0
    assert metrics["eval_top1"] == pytest.approx(metrics["probe_val_top1"])  # the fine-tune started at the probe
    assert result.metrics["probe_val_top1"] == metrics["probe_val_top1"]
    # a fine-tune that never disagrees with its probe start is not clearly better: the start (a plain model) is
    # returned, with the probe's validation top-1, and its test split scored on it
    assert metrics["returned"] == "start" and not metrics["finetune_vs_start"]["clearly_better"]
    assert metrics["best_step"] == 0 and "finetuned_best_step" in metrics
    assert metrics["finetune_vs_start"]["gains"] == metrics["finetune_vs_start"]["losses"] == 0
    assert metrics["eval_top1"] == pytest.approx(metrics["probe_val_top1"]) and not (out / "adapter").exists()
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert report["top1"] == metrics["test_top1"]
    reloaded = load_vit(out / "model").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), result.model.eval()(x), atol=1e-5, rtol=1e-5)


def colour_run(tmp_path, bases, images, name: str, val_fraction: float = 0.25, **train_keys) -> dict:
    """A full fine-tune from a zero head (a chance-level start) that the colour task makes clearly better."""
    out = tmp_path / name
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(bases["hf"])},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": val_fraction},
        "augment": {"crop": "resize", "hflip": False},
        "method": "full", "optim": {"name": "adamw", "lr": 0.003},
        "train": {"max_steps": 20, "batch_size": 6, **train_keys},
        "output": {"dir": str(out), "log_with": "none"},
    }))
    return train(load_train_recipe(tmp_path / f"{name}.yaml")).metrics


def test_keep_start_within_noise_returns_a_clearly_better_fine_tune_and_is_off_by_default_without_lp_ft(
        tmp_path, bases, images):
    guarded = colour_run(tmp_path, bases, images, "guarded", keep_start_within_noise=True)
    versus = guarded["finetune_vs_start"]
    start_top1 = guarded["eval_curve"][0]["top1"]
    assert guarded["returned"] == "fine-tune" and versus["clearly_better"] and guarded["eval_top1"] > start_top1
    # the counts are the two validation accuracies' difference, in images
    assert versus["gains"] - versus["losses"] == round((guarded["eval_top1"] - start_top1) * versus["images"])
    plain = colour_run(tmp_path, bases, images, "plain")  # null, no LP-FT: off
    assert "returned" not in plain and plain["eval_top1"] == guarded["eval_top1"]


def test_keep_start_within_noise_needs_a_validation_split(tmp_path, bases, images):
    from vit_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="keep_start_within_noise.*validation split: set data.val_fraction"):
        colour_run(tmp_path, bases, images, "none", val_fraction=0.0, keep_start_within_noise=True)
    with pytest.raises(ConfigError, match="keep_start_within_noise.*needs train.keep_best"):
        colour_run(tmp_path, bases, images, "off", keep_start_within_noise=True, keep_best=False)


def test_lp_ft_chooses_C_on_validation_and_its_step_0_evaluation_is_the_probe(tmp_path, bases, images):
    """The paper's protocol: C chosen on the validation split, the probe fitted on train alone; the run's
    step-0 validation score is the probe's, and keep-best never returns less even at a rate that wrecks it."""
    from vit_transfer.probe.logistic import select_C
    from vit_transfer.probe import ProbeConfig

    out = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(bases["hf"]), "head_init": "probe"},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": 0.25, "host_image_size": 24},
        "augment": {"crop": "resize", "hflip": False},
        "optim": {"name": "sgd", "lr": 3.0, "head_lr": 0.5},  # hot enough to fall below the start
        "schedule": {"name": "constant"},
        "train": {"max_steps": 6, "batch_size": 6},
        "eval": {"every_steps": 2},
        "output": {"dir": str(out), "log_with": "none"},
    }))
    result = train(load_train_recipe(tmp_path / "r.yaml"))
    m = result.metrics
    assert m["probe_selection_split"] == "eval"
    assert m["eval_curve"][0]["step"] == 0 and m["eval_curve"][0]["top1"] == m["probe_val_top1"]
    assert m["eval_top1"] >= m["probe_val_top1"] > 0.5

    # oracle for C: the same search run by hand on the same frozen features (train to fit, validation to choose)
    from vit_transfer.probe import extract_features

    data = load_image_datasets(DataConfig(source=str(images), val_fraction=0.25, num_workers=0, host_image_size=24))
    model = load_vit(bases["hf"], num_labels=data.num_labels, id2label=data.id2label)
    tf = build_transform(model.preprocessing, False, normalize=False, size=24)
    tr, va = (extract_features(model, split, tf, precision="auto", progress=False) for split in (data.train, data.eval))
    cfg = ProbeConfig()
    search = select_C(tr.features, tr.labels, va.features, va.labels, data.num_labels, grid=cfg.c_grid,
                      exponents=tuple(cfg.c_exponents), steps=cfg.c_steps, refine_steps=cfg.c_refine_steps,
                      max_iter=cfg.max_iter)
    # the run's C is one of the search's best on validation (the colours separate perfectly, so several C reach
    # the top; which of them wins on validation loss depends on the machine's bf16 kernels)
    at_run_C = next(t for t in search.trials if t["C"] == pytest.approx(m["probe_C"]))
    assert at_run_C["val_top1"] == search.best_val_top1 == pytest.approx(m["probe_val_top1"])


def test_head_lr_gives_the_head_its_own_rate(bases):
    from vit_transfer.training.config import OptimConfig
    from vit_transfer.training.optim import param_groups

    model = load_vit(bases["timm"], num_labels=3)
    groups = param_groups(model, OptimConfig(lr=0.001, head_lr=0.1, layer_decay=0.5))
    head = {id(p) for p in model.head_parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # a group is all head or all backbone
        if in_head == {True}:
            assert group["lr"] == pytest.approx(0.1)  # the head sits at the top layer: no decay
        else:
            assert group["lr"] <= 0.001 + 1e-12
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_lp_ft_from_a_multi_block_probe_starts_at_it_and_reloads(tmp_path, bases, images, ecosystem):
    """model.head_last_n: the head reads the last 2 blocks' cls+mean (DINOv2's linear evaluation style); LP-FT fits
    the probe on those features, its step-0 evaluation is that probe's, and the saved model reloads with load_vit
    giving the trained model's logits."""
    out = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(bases[ecosystem]), "head_init": "probe", "pooling": "cls+mean", "head_last_n": 2},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": 0.25},
        "augment": {"crop": "resize", "hflip": False},
        "method": "full",
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"max_steps": 3, "batch_size": 6, "keep_start_within_noise": False},
        "output": {"dir": str(out), "log_with": "none"},
    }))
    result = train(load_train_recipe(tmp_path / "r.yaml"))
    metrics = json.loads((out / "metrics.json").read_text())
    spec = result.model.head_spec
    assert (spec.pooling, spec.last_n) == ("cls+mean", 2)
    assert result.model.head_parameters()[0].shape[1] == result.model.feature_dim("cls+mean", 2)
    step0 = next(e for e in metrics["eval_curve"] if e["step"] == 0)
    assert step0["top1"] == pytest.approx(metrics["probe_val_top1"]) and metrics["probe_val_top1"] > 0.5
    reloaded = load_vit(str(out / "model")).eval()
    pixels = torch.rand(2, 3, *result.model.image_size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels), result.model.eval()(pixels), atol=1e-5, rtol=1e-4)


def test_head_last_n_beyond_the_depth_is_a_config_error(bases):
    from vit_transfer.config import ModelConfig
    from vit_transfer.errors import ConfigError
    from vit_transfer.models import load_vit_from_config

    with pytest.raises(ConfigError, match=r"model.head_last_n must be 1 to the model's depth \(2 blocks\), got 5"):
        load_vit_from_config(ModelConfig(source=str(bases["hf"]), head_last_n=5), num_labels=3)
    # no head built, no head option read: the checkpoint's own head is kept as it is
    kept = load_vit(bases["hf"], head_last_n=5)
    assert kept.head_spec == load_vit(bases["hf"]).head_spec


def test_a_saved_multi_block_head_is_reused_only_at_its_own_depth(bases, tmp_path):
    """reuse_matching_head holds for head_last_n as for pooling: the same labels at the same depth keep the trained
    head; another depth builds a new one; null keeps whatever the checkpoint has."""
    labels = {0: "a", 1: "b", 2: "c"}
    model = load_vit(bases["hf"], id2label=labels, pooling="cls+mean", head_last_n=2)
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_()
    model.save(tmp_path)
    kept = load_vit(str(tmp_path), id2label=labels, head_last_n=2)
    torch.testing.assert_close(kept.head_parameters()[0], model.head_parameters()[0])
    assert load_vit(str(tmp_path), id2label=labels).head_spec.last_n == 2
    fresh = load_vit(str(tmp_path), id2label=labels, head_last_n=1)
    assert fresh.head_spec.last_n == 1 and torch.count_nonzero(fresh.head_parameters()[0]) == 0
