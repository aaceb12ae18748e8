"""The probe sweep of ``vit-transfer auto``: one extraction sliced per configuration, chosen on validation, served."""

import pytest
import torch

from vit_transfer import load_vit
from vit_transfer.autoselect.probe_sweep import (
    BlockFeatures,
    attach_probe,
    block_choices,
    extract_block_features,
    model_depth,
    stock_loader_note,
    sweep_probes,
)
from vit_transfer.data import DataConfig, load_image_datasets
from vit_transfer.probe import ProbeConfig, extract_features

FAST = ProbeConfig(c_grid=[0.01, 1.0, 100.0], max_iter=50)


@pytest.fixture(scope="module")
def data(image_folder):
    return load_image_datasets(DataConfig(source=str(image_folder), num_workers=0, val_fraction=0.25))


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_slices_equal_a_direct_extraction(bases, data, ecosystem):
    model = load_vit(str(bases[ecosystem]))
    depth = model_depth(model)
    assert depth == 2 and block_choices(depth) == [1, 2]
    once = extract_block_features(model, data.train, depth, progress=False, precision="fp32")
    for pooling in ("cls", "mean", "cls+mean"):
        for last_n in (1, 2):
            direct = extract_features(model, data.train, pooling=pooling, last_n=last_n, progress=False,
                                      precision="fp32")
            torch.testing.assert_close(once.select(pooling, last_n), direct.features)


def test_block_grid_is_capped_by_depth():
    assert block_choices(2) == [1, 2]
    assert block_choices(6) == [1, 2, 4, 6]  # the shipped model: all its blocks are the last choice
    assert block_choices(12) == [1, 2, 4, 8]


def test_sweep_picks_on_validation_and_fits_on_train_only():
    torch.manual_seed(0)
    # block 0 (older) carries the label in its mean, the last block is noise: the sweep must find (mean, 2 blocks)
    n, d = 60, 4
    labels = torch.arange(n) % 3
    tokens = torch.randn(n, 2, 2, d)
    tokens[:, 0, 1, 0] += 10.0 * labels
    val_labels = torch.arange(30) % 3
    val_tokens = torch.randn(30, 2, 2, d)
    val_tokens[:, 0, 1, 0] += 10.0 * val_labels
    train, val = BlockFeatures(tokens, labels), BlockFeatures(val_tokens, val_labels)
    sweep = sweep_probes(train, val, 3, config=FAST)
    assert len(sweep.trials) == 6  # 3 poolings x blocks [1, 2]
    assert (sweep.best.pooling, sweep.best.last_n) in {("mean", 2), ("cls+mean", 2)}
    assert sweep.best.val_top1 == max(t.val_top1 for t in sweep.trials) > 0.9
    # every single-block configuration sees only noise
    assert all(t.val_top1 < 0.7 for t in sweep.trials if t.last_n == 1)
    # fitted on train only: the probe is the search's train-only fit at the chosen C, not one on train + validation
    from vit_transfer.probe import fit_logistic_regression, select_C

    x, x_val = train.select(sweep.best.pooling, sweep.best.last_n), val.select(sweep.best.pooling, sweep.best.last_n)
    oracle = select_C(x, labels, x_val, val_labels, 3, grid=FAST.c_grid, max_iter=FAST.max_iter).best_fit
    torch.testing.assert_close(sweep.probe.weight, oracle.weight)
    both = fit_logistic_regression(torch.cat([x, x_val]), torch.cat([labels, val_labels]), sweep.best.C, 3,
                                   max_iter=FAST.max_iter)
    assert not torch.allclose(sweep.probe.weight, both.weight)


def test_sweep_runs_richest_first_and_breaks_ties_towards_the_simplest(monkeypatch):
    """A budget that stops the sweep after one configuration has tried the richest (both poolings of every block);
    when every configuration scores the same, the simplest (the class token of the last block) is returned."""
    from vit_transfer.autoselect import probe_sweep
    from vit_transfer.probe.logistic import CSearch, LogisticRegression

    def tied_search(x, y, x_val, y_val, k, **_):
        dim = x.shape[1]
        fit = LogisticRegression(torch.zeros(k, dim), torch.zeros(k), torch.zeros(dim), torch.ones(dim), 1.0)
        return CSearch(1.0, 0.5, [{"C": 1.0, "val_top1": 0.5, "val_loss": 1.0}], fit)

    monkeypatch.setattr(probe_sweep, "select_C", tied_search)
    labels = torch.arange(12) % 3
    train = val = BlockFeatures(torch.randn(12, 2, 2, 4), labels)
    cut = sweep_probes(train, val, 3, config=FAST, stop=lambda: True)
    assert [(t.pooling, t.last_n) for t in cut.trials] == [("cls+mean", 2)]
    whole = sweep_probes(train, val, 3, config=FAST)
    assert [(t.pooling, t.last_n) for t in whole.trials] == [
        ("cls+mean", 2), ("mean", 2), ("cls", 2), ("cls+mean", 1), ("mean", 1), ("cls", 1)]
    assert (whole.best.pooling, whole.best.last_n) == ("cls", 1) and whole.best.stock_head
    # the order is the sweep's own, not the caller's listing: the widest pooling of the most blocks first
    listed = sweep_probes(train, val, 3, config=FAST, poolings=("cls+mean", "cls"), blocks=[2, 1])
    assert [(t.pooling, t.last_n) for t in listed.trials] == [
        ("cls+mean", 2), ("cls", 2), ("cls+mean", 1), ("cls", 1)]


def test_returned_probe_scores_what_it_was_chosen_on():
    """The returned probe is the search's own fit, so its validation top-1 is the one the sweep chose it on. On
    these 256 features of 60 images (separable) the chosen C is 100, and a cold refit there stops elsewhere
    (L-BFGS, 50 iterations): it scored 0.933 against the search fit's 0.95; on digits' 2,304 features such a
    refit lost 2 points."""
    g = torch.Generator().manual_seed(2)
    n, k, d = 60, 3, 256
    labels = torch.arange(n) % k
    centres = torch.randn(k, d, generator=g) * 0.25
    tokens = torch.randn(2 * n, 1, 2, d, generator=g) + centres[torch.cat([labels, labels])][:, None, None, :]
    train, val = BlockFeatures(tokens[:n], labels), BlockFeatures(tokens[n:], labels)
    config = ProbeConfig(fewshot=False, cache=False, c_grid=[1e-4, 1e-2, 1.0, 1e2, 1e4], max_iter=50)
    sweep = sweep_probes(train, val, k, config=config, poolings=("cls",), blocks=[1])
    assert sweep.best.C == 100.0
    assert sweep.val_top1 == sweep.best.val_top1 == 0.95
    # LP-FT's probe (run_linear_probe, C on validation, fitted on train alone) is the search's fit too
    from vit_transfer.probe.features import Features
    from vit_transfer.probe.run import run_linear_probe

    features = {name: Features(split.select("cls", 1), split.labels, torch.arange(n))
                for name, split in (("train", train), ("eval", val))}
    result, probe = run_linear_probe(features, k, config, choose_on_eval=True)
    assert (result.C, result.val_top1, result.top1) == (100.0, 0.95, 0.95)
    torch.testing.assert_close(probe.weight, sweep.probe.weight)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("pooling,last_n", [("cls", 1), ("cls+mean", 2)])
def test_attached_probe_serves_the_probe_logits_and_reloads(bases, data, tmp_path, ecosystem, pooling, last_n):
    model = load_vit(str(bases[ecosystem]))
    train = extract_block_features(model, data.train, 2, progress=False, precision="fp32")
    val = extract_block_features(model, data.eval, 2, progress=False, precision="fp32")
    sweep = sweep_probes(train, val, data.num_labels, config=FAST, poolings=(pooling,), blocks=[last_n])
    attach_probe(model, sweep, data.id2label)
    from vit_transfer.data import build_transform

    transform = build_transform(model.preprocessing, train=False)
    pixels = torch.stack([transform(data.eval[i][0]) for i in range(len(data.eval))])
    with torch.inference_mode():
        served = model(pixels)
    expected = sweep.probe.logits(val.select(pooling, last_n))
    torch.testing.assert_close(served, expected, atol=1e-4, rtol=1e-4)
    model.save(tmp_path / "model")
    again = load_vit(str(tmp_path / "model"))
    assert again.head_spec.last_n == last_n and again.head_spec.pooling == pooling
    with torch.inference_mode():
        torch.testing.assert_close(again(pixels), served, atol=1e-5, rtol=1e-5)
    note = stock_loader_note(again)
    assert (note is None) == (pooling == "cls" and last_n == 1)
    if note is not None:  # what the note says: the stock loaders refuse the wider classifier
        assert "refuse the saved classifier" in note
        with pytest.raises(RuntimeError, match="mismatch"):
            if ecosystem == "hf":
                from transformers import AutoModelForImageClassification

                AutoModelForImageClassification.from_pretrained(tmp_path / "model")
            else:
                import timm

                timm.create_model(f"local-dir:{tmp_path / 'model'}", pretrained=True)
