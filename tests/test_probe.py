"""Probes on synthetic features, feature extraction and the feature cache (tiny models, no data API)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vit_transfer import load_vit
from vit_transfer.probe import (
    FeatureCache,
    cached_features,
    extract_features,
    fewshot_lsr,
    fit_logistic_regression,
    model_digest,
    select_C,
    topk_accuracy,
)
from vit_transfer.probe.run import stratified_holdout


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Probes do thousands of tiny matmuls: on a busy 2-core box, OpenMP barriers cost more than the math."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

K = 4


def clusters(n: int, dim: int = 16, seed: int = 0, spread: float = 6.0):
    """Gaussian clusters around well-separated centres: linearly separable by construction."""
    centres = torch.randn(K, dim, generator=torch.Generator().manual_seed(123)) * spread
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    return centres[y] + torch.randn(n, dim, generator=g), y


def random_labels(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, K, (n,), generator=torch.Generator().manual_seed(seed))


# --- logistic regression ----------------------------------------------------------------------
def test_logistic_probe_separable_features_near_perfect():
    xtr, ytr = clusters(400, seed=1)
    xva, yva = clusters(200, seed=2)
    xte, yte = clusters(1000, seed=3)
    search = select_C(xtr, ytr, xva, yva, K)
    probe = fit_logistic_regression(torch.cat([xtr, xva]), torch.cat([ytr, yva]), search.best_C, K)
    assert topk_accuracy(probe.logits(xte), yte) >= 0.98
    assert len(search.trials) == 12 + 4  # coarse grid then refinement


def test_logistic_probe_random_labels_at_chance():
    # labels independent of the features everywhere: no C can beat chance on fresh test labels
    xtr, xva, xte = clusters(400, seed=1)[0], clusters(200, seed=2)[0], clusters(2000, seed=3)[0]
    ytr, yva, yte = random_labels(400, 1), random_labels(200, 2), random_labels(2000, 3)
    search = select_C(xtr, ytr, xva, yva, K)
    probe = fit_logistic_regression(torch.cat([xtr, xva]), torch.cat([ytr, yva]), search.best_C, K)
    accuracy = topk_accuracy(probe.logits(xte), yte)
    assert abs(accuracy - 1 / K) < 0.05, accuracy  # 1/K = 0.25; binomial std on 2000 samples ~ 0.01


def test_logistic_matches_sklearn_C_convention():
    from sklearn.linear_model import LogisticRegression as SkLogReg

    x, y = clusters(300, dim=8, spread=1.0)  # overlapping classes: the penalty matters
    ours = fit_logistic_regression(x, y, C=0.05, num_classes=K, tolerance=1e-9)
    xs = ((x - ours.mean) / ours.std).double().numpy()
    sk = SkLogReg(C=0.05, max_iter=5000, tol=1e-10).fit(xs, y.numpy())
    # sklearn's multinomial coefficients are identifiable only up to a shared shift per feature
    ours_w = ours.weight.double().numpy()
    assert np.allclose(ours_w - ours_w.mean(0), sk.coef_ - sk.coef_.mean(0), atol=2e-3)
    assert np.allclose(ours.logits(x).argmax(1).numpy(), sk.predict(xs))


def test_folded_weights_equal_standardised_probe():
    x, y = clusters(200, seed=4)
    probe = fit_logistic_regression(x * 3 + 7, y, C=1.0, num_classes=K)
    weight, bias = probe.folded()
    assert torch.allclose((x * 3 + 7) @ weight.T + bias, probe.logits(x * 3 + 7), atol=1e-4)


def test_explicit_grid_tries_exactly_those_values():
    xtr, ytr = clusters(100, seed=1)
    search = select_C(xtr, ytr, *clusters(100, seed=2), K, grid=[0.01, 1.0, 100.0])
    assert [t["C"] for t in search.trials] == [0.01, 1.0, 100.0]


def test_stratified_holdout_keeps_every_class():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 2)
    keep, held = stratified_holdout(labels, 0.1, seed=0)
    assert sorted(torch.bincount(labels[held]).tolist()) == [1, 1, 2]
    assert set(keep.tolist()).isdisjoint(held.tolist()) and len(keep) + len(held) == 32


# --- few-shot ---------------------------------------------------------------------------------
def test_fewshot_separable_clusters_high_accuracy():
    xtr, ytr = clusters(200, dim=32, seed=1)
    xte, yte = clusters(400, dim=32, seed=2)
    result = fewshot_lsr(xtr, ytr, xte, yte, shots=[1, 5, 10], num_draws=3)
    scores = result.by_shots()
    assert set(scores) == {1, 5, 10}
    assert scores[5].mean >= 0.95 and scores[10].mean >= 0.95
    assert all(len(s.runs) == 3 for s in result.scores)


def test_fewshot_random_labels_at_chance():
    xtr, xte = clusters(400, dim=32, seed=1)[0], clusters(4000, dim=32, seed=2)[0]
    result = fewshot_lsr(xtr, random_labels(400, 1), xte, random_labels(4000, 2), shots=[10, 25], num_draws=3)
    for score in result.scores:
        assert abs(score.mean - 1 / K) < 0.04, score  # binomial std on 4000 samples ~ 0.007


def test_fewshot_skips_k_above_smallest_class_and_is_seeded():
    xtr, ytr = clusters(40, seed=1)  # 10 per class
    xte, yte = clusters(40, seed=2)
    a = fewshot_lsr(xtr, ytr, xte, yte, shots=[1, 5, 25], seed=7)
    b = fewshot_lsr(xtr, ytr, xte, yte, shots=[1, 5, 25], seed=7)
    assert [s.shots for s in a.scores] == [1, 5]
    assert any("25-shot skipped" in n and "10 training" in n for n in a.notes)
    assert [s.runs for s in a.scores] == [s.runs for s in b.scores]


def _ridge_reference(x, y, xte, yte, form: str) -> float:
    """big_vision's recipe written out, solved in the form asked for."""
    mean, std = x.double().mean(0), x.double().std(0, unbiased=False) + 1e-5
    xs = torch.nn.functional.pad((x.double() - mean) / std, (0, 1), value=100.0)
    xt = torch.nn.functional.pad((xte.double() - mean) / std, (0, 1), value=100.0)
    t = 2.0 * torch.nn.functional.one_hot(y, K).double() - 1
    if form == "primal":
        w = torch.linalg.solve(xs.T @ xs + 1024 * torch.eye(xs.shape[1], dtype=xs.dtype), xs.T @ t)
    else:
        w = xs.T @ torch.linalg.solve(xs @ xs.T + 1024 * torch.eye(xs.shape[0], dtype=xs.dtype), t)
    return float(((xt @ w).argmax(1) == yte).double().mean())


@pytest.mark.parametrize("n", [12, 200])  # N < D + 1 (dual form inside) and N > D + 1 (primal inside)
def test_ridge_accuracy_equals_both_closed_forms(n):
    from vit_transfer.probe.fewshot import ridge_accuracy

    x, y = clusters(n, dim=64, spread=0.3, seed=3)  # overlapping: accuracy well below 1
    xte, yte = clusters(400, dim=64, spread=0.3, seed=4)
    ours = ridge_accuracy(x, y, xte, yte, K)
    assert ours == _ridge_reference(x, y, xte, yte, "primal") == _ridge_reference(x, y, xte, yte, "dual")
    assert 0.3 < ours < 0.99


# --- feature extraction -----------------------------------------------------------------------
def to_tensor(image: Image.Image) -> torch.Tensor:
    """A deterministic stand-in for the eval transform (32 px RGB, [-1, 1])."""
    array = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(2, 0, 1)


def image_list(n: int = 11, seed: int = 0, broken: tuple[int, ...] = ()) -> list:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        items.append((None if i in broken else image, i % 3))
    return items


@pytest.fixture(scope="module")
def tiny_model(hf_vit_dir):
    return load_vit(hf_vit_dir)


def test_extract_features_matches_forward_features_in_order(tiny_model):
    data = image_list(11, broken=(4,))
    feats = extract_features(tiny_model, data, to_tensor, pooling="cls+mean", batch_size=4, progress=False,
                             precision="fp32")
    kept = [i for i in range(11) if i != 4]
    assert feats.indices.tolist() == kept and feats.num_skipped == 1
    assert feats.labels.tolist() == [i % 3 for i in kept]
    with torch.no_grad():
        expected = tiny_model.forward_features(torch.stack([to_tensor(data[i][0]) for i in kept]), "cls+mean")
    assert feats.features.shape == (10, tiny_model.feature_dim("cls+mean")) == (10, 64)
    assert torch.allclose(feats.features, expected, atol=1e-5)


def test_a_transform_bug_raises_naming_the_item_instead_of_skipping_it(tiny_model):
    from vit_transfer.errors import DataError

    def broken_transform(image):
        raise ValueError("a bug in my transform")

    with pytest.raises(DataError, match="transform failed on item 0.*a bug in my transform"):
        extract_features(tiny_model, image_list(3), broken_transform, batch_size=4, progress=False)


def test_extract_last_n_blocks_concatenates(tiny_model):
    feats = extract_features(tiny_model, image_list(5), to_tensor, pooling="cls", last_n=2, progress=False)
    one = extract_features(tiny_model, image_list(5), to_tensor, pooling="cls", last_n=1, progress=False)
    assert feats.dim == 2 * one.dim
    assert torch.allclose(feats.features[:, one.dim:], one.features, atol=1e-5)  # the last block comes last


# --- feature cache ----------------------------------------------------------------------------
class CountingModel:
    """Counts forward_features calls of a wrapped TransferModel (the cache must skip them on a hit)."""

    def __init__(self, model):
        self.calls = 0
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def forward_features(self, *args, **kwargs):
        self.calls += 1
        return self._model.forward_features(*args, **kwargs)


def test_cache_hit_skips_the_backbone_and_returns_same_features(tmp_path, tiny_model):
    cache = FeatureCache(tmp_path / "cache")
    spy = CountingModel(tiny_model)
    data = image_list(7, broken=(2,))
    first, hit1 = cached_features(spy, data, "data-v1", cache, to_tensor, pooling="mean", batch_size=4, progress=False)
    calls_after_first = spy.calls
    second, hit2 = cached_features(spy, data, "data-v1", cache, to_tensor, pooling="mean", batch_size=4, progress=False)
    assert (hit1, hit2) == (False, True)
    assert (cache.misses, cache.hits) == (1, 1)
    assert calls_after_first == 2 and spy.calls == 2  # two batches the first time, none the second
    assert torch.equal(first.features, second.features) and torch.equal(first.indices, second.indices)
    assert second.num_skipped == 1
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"  # no temporary file left behind


def test_cache_misses_when_pooling_resolution_or_data_change(tmp_path, hf_vit_dir):
    cache = FeatureCache(tmp_path)
    model = load_vit(hf_vit_dir)
    data = image_list(3)

    def run(model, pooling="cls", fingerprint="data-v1", transform=to_tensor):
        return cached_features(model, data, fingerprint, cache, transform, pooling=pooling, progress=False)[1]

    assert run(model) is False
    assert run(model) is True
    assert run(model, pooling="mean") is False
    assert run(model, fingerprint="data-v2") is False
    resized = load_vit(hf_vit_dir, image_size=48)

    def to_48(image):
        return torch.nn.functional.interpolate(to_tensor(image)[None], size=48)[0]

    assert run(resized, transform=to_48) is False
    assert run(model) is True  # the original entry is still there
    assert (cache.hits, cache.misses) == (2, 4)


def test_model_digest_tracks_weights_not_the_head(hf_vit_dir):
    a, b = load_vit(hf_vit_dir), load_vit(hf_vit_dir)
    assert model_digest(a) == model_digest(b)
    b.set_head(7)  # a different classifier: the features are the same
    assert model_digest(a) == model_digest(b)
    c = load_vit(hf_vit_dir)
    c.model.vit.layernorm.eps = 1e-2  # no weight changes, the features do
    assert model_digest(c) != model_digest(a)
    with torch.no_grad():
        next(p for n, p in b.named_parameters() if "layers.1.attention.q_proj.weight" in n).view(-1)[0] += 1e-3
    assert model_digest(a) != model_digest(b)


def test_corrupt_cache_entry_is_a_miss(tmp_path, tiny_model):
    cache = FeatureCache(tmp_path)
    data = image_list(3)
    cached_features(tiny_model, data, "d", cache, to_tensor, progress=False)
    entry = next(tmp_path.glob("*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    feats, hit = cached_features(tiny_model, data, "d", cache, to_tensor, progress=False)
    assert hit is False and len(feats) == 3
    assert cached_features(tiny_model, data, "d", cache, to_tensor, progress=False)[1] is True  # rewritten


def test_attached_head_serves_probe_logits_and_mismatch_is_measured(hf_vit_dir):
    from vit_transfer.probe import attach_linear_head, head_agreement

    model = load_vit(hf_vit_dir)
    pixels = torch.stack([to_tensor(image) for image, _ in image_list(4)])
    weight, bias = torch.randn(5, 64), torch.randn(5)
    attach_linear_head(model, weight, bias, {i: f"c{i}" for i in range(5)}, pooling="cls+mean")
    assert model.num_labels == 5 and model.id2label[4] == "c4"
    assert head_agreement(model, pixels, weight, bias, "cls+mean") < 1e-5
    assert head_agreement(model, pixels, weight, bias + 1, "cls+mean") > 1e-2  # not the probe: flagged


def test_bf16_features_are_close_to_fp32_and_cached_apart(tmp_path, tiny_model):
    cache = FeatureCache(tmp_path)
    data = image_list(6)
    fp32, _ = cached_features(tiny_model, data, "d", cache, to_tensor, precision="fp32", progress=False)
    bf16, hit = cached_features(tiny_model, data, "d", cache, to_tensor, precision="bf16", progress=False)
    assert hit is False and bf16.features.dtype == torch.float32  # stored as float32 whatever ran
    assert not torch.equal(bf16.features, fp32.features)
    assert torch.allclose(bf16.features, fp32.features, atol=0.1, rtol=0.05)
    assert cached_features(tiny_model, data, "d", cache, to_tensor, precision="auto", progress=False)[1] is True  # auto = fp32 on CPU
