"""Decoding once: the cached split serves the very pixels, batches and skips of the per-epoch decode."""

import warnings

import numpy as np
import pytest
import torch

from vit_transfer.data import AugmentConfig, DataConfig, build_transform, load_image_datasets, make_dataloader
from vit_transfer.data.decode_cache import DecodedImages, cache_decoded, decoded_bytes
from vit_transfer.models import Preprocessing
from vit_transfer.testing import write_image_folder

PRE = Preprocessing(image_size=(24, 24), mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = write_image_folder(tmp_path_factory.mktemp("cache"), per_class=6, size=20, mode="L")
    good = (root / "train" / "class_0" / "0.png").read_bytes()
    (root / "train" / "class_1" / "truncated.png").write_bytes(good[: len(good) // 2])
    return root


def train_split(folder):
    return load_image_datasets(DataConfig(source=str(folder), val_fraction=0.0, eval_split="none")).train


def batches(dataset, epochs=2):
    tf = build_transform(PRE, True, AugmentConfig(crop="random_resized_crop", hflip=True), normalize=False)
    loader = make_dataloader(dataset, tf, 5, shuffle=True, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [b for _ in range(epochs) for b in loader]


def test_cached_split_gives_identical_batches_and_skips(folder):
    plain = train_split(folder)
    cached = cache_decoded(plain, budget_mib=64, name="train")
    assert isinstance(cached, DecodedImages) and len(cached) == len(plain) == 19
    assert cached.content_key() == plain.content_key() and np.array_equal(cached.labels, plain.labels)
    bad = [i for i in range(len(plain)) if plain.try_load(i)[0] is None]
    assert len(bad) == 1 and cached.try_load(bad[0])[0] is None
    assert cached.try_load(bad[0])[2] == plain.try_load(bad[0])[2]  # the same reason, for the same warning
    assert cached.nbytes == 18 * 20 * 20  # grey images stay one byte a pixel
    a, b = batches(plain), batches(cached)
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):  # the same crops, flips, order and skip counts
        assert torch.equal(x["pixel_values"], y["pixel_values"]) and torch.equal(x["labels"], y["labels"])
        assert int(x["num_skipped"]) == int(y["num_skipped"])
    assert sum(int(x["num_skipped"]) for x in b) == 2  # one bad file, two epochs


def test_the_cache_serves_copies(folder):
    cached = cache_decoded(train_split(folder), budget_mib=64)
    before = np.asarray(cached.load_image(0)).copy()
    assert before.max() < 255
    cached.load_image(0).paste(255, (0, 0, 20, 20))  # a transform that writes in place
    assert np.array_equal(np.asarray(cached.load_image(0)), before)


def test_a_split_over_budget_is_decoded_per_epoch(folder):
    plain = train_split(folder)
    assert cache_decoded(plain, budget_mib=0) is plain
    tiny = cache_decoded(plain, budget_mib=1)
    assert isinstance(tiny, DecodedImages)  # 7 KiB of pixels fit 1 MiB
    per_image = decoded_bytes(plain.load_image(0))
    import vit_transfer.data.decode_cache as dc

    old = dc.MIB
    dc.MIB = per_image  # a budget of 3 images: the sampled estimate (19 images) says no, silently
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache_decoded(plain, budget_mib=3) is plain
    finally:
        dc.MIB = old


def test_array_datasets_are_not_copied():
    data = load_image_datasets(DataConfig(source="sklearn:digits", val_fraction=0.1))
    assert cache_decoded(data.train, 64) is data.train
