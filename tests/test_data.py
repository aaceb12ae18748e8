"""Data sources, splits and fingerprints (vit_transfer.data): every source kind, offline."""

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vit_transfer.data import DataConfig, load_image_datasets, read_idx, stratified_split, stratified_subset
from vit_transfer.errors import DataError
from vit_transfer.testing import write_image_folder

FASHION = Path("/usr/share/datasets/fashion-mnist")


def counts(dataset) -> list[int]:
    return np.bincount(dataset.labels).tolist()


def png_bytes(color, size=(6, 5), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


# --- image folders ---------------------------------------------------------------------------


def test_image_folder_with_splits_carves_a_stratified_eval(tmp_path):
    root = write_image_folder(tmp_path / "imgs", num_classes=3, per_class=8)
    ds = load_image_datasets(DataConfig(source=str(root), val_fraction=0.25))
    assert ds.id2label == {0: "class_0", 1: "class_1", 2: "class_2"} and ds.num_labels == 3
    assert counts(ds.train) == [6, 6, 6] and counts(ds.eval) == [2, 2, 2] and counts(ds.test) == [4, 4, 4]
    assert ds.split_names["test"] == "test" and "of train" in ds.split_names["eval"]
    image, label = ds.test[5]
    assert image.size == (32, 32) and label == 1


def test_image_folder_without_splits_ignores_non_images(tmp_path):
    for name, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / name / "nested").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (10, 7), colour).save(tmp_path / name / f"{i}.png")
        Image.new("RGB", (10, 7), colour).save(tmp_path / name / "nested" / "deep.jpg")
        (tmp_path / name / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("about")
    ds = load_image_datasets(DataConfig(source=str(tmp_path), eval_split="none"))
    assert ds.format == "imagefolder" and ds.id2label == {0: "cat", 1: "dog"}
    assert counts(ds.train) == [4, 4] and ds.eval is None and ds.test is None
    assert ds.train[4][0].getpixel((0, 0)) == (0, 0, 255)


# --- tables --------------------------------------------------------------------------------------


def test_csv_of_relative_paths_with_string_labels_and_split_column(tmp_path):
    (tmp_path / "pics").mkdir()
    rows = ["file,animal,split"]
    for i in range(12):
        animal = ["zebra", "cat", "dog"][i % 3]
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / "pics" / f"{i}.png")
        rows.append(f"pics/{i}.png,{animal},{'train' if i < 9 else 'test'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = DataConfig(source=str(tmp_path / "labels.csv"), image_column="file", label_column="animal", eval_split="none")
    ds = load_image_datasets(cfg)
    assert ds.format == "csv" and ds.id2label == {0: "cat", 1: "dog", 2: "zebra"}
    assert len(ds.train) == 9 and len(ds.test) == 3
    image, label = ds.test[0]  # row 9: zebra, red 180
    assert ds.id2label[label] == "zebra" and image.getpixel((0, 0)) == (180, 0, 0)


def test_parquet_of_image_bytes_with_integer_labels(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"image": [png_bytes((v, v, v)) for v in (10, 20, 30, 40)], "label": [7, 3, 7, 3]})
    frame.to_parquet(tmp_path / "data.parquet")
    ds = load_image_datasets(DataConfig(source=str(tmp_path / "data.parquet"), eval_split="none"))
    assert ds.format == "parquet" and ds.id2label == {0: "3", 1: "7"}
    assert ds.train.labels.tolist() == [1, 0, 1, 0]
    assert ds.train[2][0].getpixel((0, 0)) == (30, 30, 30)


# --- idx -------------------------------------------------------------------------------------------


def test_read_idx_and_idx_folder_gzip_or_not(tmp_path):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (20, 5, 4)), rng.integers(0, 256, (6, 5, 4))
    train_y, test_y = np.arange(20) % 4, np.arange(6) % 4
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y, compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_x, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_y, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), train_x)
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte"), test_y)
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    ds = load_image_datasets(DataConfig(source=str(tmp_path), eval_split="none"))
    assert ds.format == "idx" and ds.id2label == {0: "a", 1: "b", 2: "c", 3: "d"}
    assert len(ds.train) == 20 and len(ds.test) == 6
    np.testing.assert_array_equal(np.asarray(ds.test[3][0]), test_x[3])
    assert ds.test[3][1] == 3


def test_read_idx_rejects_a_short_file(tmp_path):
    bad = tmp_path / "x-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">iii", 10, 28, 28) + b"\0" * 100)
    with pytest.raises(DataError, match="10, 28, 28"):
        read_idx(bad)


# --- datasets library ----------------------------------------------------------------------------


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    return tmp_path


def cifar_like_dataset():
    import datasets

    features = datasets.Features(
        {"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["zebra", "apple", "mango"])}
    )
    data = {"img": [{"bytes": png_bytes((40 * i, 0, 0)), "path": None} for i in range(6)], "fine_label": [0, 1, 2, 0, 1, 2]}
    return datasets.Dataset.from_dict(data, features=features)


def test_hub_parquet_folder_uses_classlabel_names_and_configured_columns(datasets_cache):
    folder = datasets_cache / "cifar_like"
    (folder / "data").mkdir(parents=True)
    cifar_like_dataset().to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    cifar_like_dataset().select(range(3)).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    cfg = DataConfig(source=str(folder), image_column="img", label_column="fine_label", eval_split="none")
    ds = load_image_datasets(cfg)
    assert ds.format == "hub" and ds.id2label == {0: "zebra", 1: "apple", 2: "mango"}  # feature order, not sorted
    assert len(ds.train) == 6 and len(ds.test) == 3
    assert ds.train[4][0].getpixel((0, 0)) == (160, 0, 0) and ds.train[4][1] == 1
    with pytest.raises(DataError, match=r"'image' not found.*img, fine_label"):
        load_image_datasets(DataConfig(source=str(folder), format="hub"))


def test_hub_format_on_an_image_folder_uses_the_one_folder_reader(datasets_cache):
    """datasets' imagefolder builder would drop the labels of nested class folders and write a cache."""
    root = write_image_folder(datasets_cache / "imgs", num_classes=2, per_class=4)
    (root / "train" / "class_1" / "more").mkdir()
    Image.new("RGB", (32, 32), (0, 200, 0)).save(root / "train" / "class_1" / "more" / "deep.png")
    (root / "train" / "class_0" / "bad.png").write_bytes(b"not a png")
    ds = load_image_datasets(DataConfig(source=str(root), format="hub", eval_split="none"))
    auto = load_image_datasets(DataConfig(source=str(root), eval_split="none"))
    assert ds.format == auto.format == "imagefolder" and ds.id2label == {0: "class_0", 1: "class_1"}
    assert ds.train.refs == auto.train.refs and counts(ds.train) == [5, 5] and len(ds.test) == 4
    bad = ds.train.refs.index(str(root / "train" / "class_0" / "bad.png"))
    image, label, reason = ds.train.try_load(bad)
    assert image is None and label == 0 and "UnidentifiedImageError" in reason
    assert ds.train.describe(bad).endswith("bad.png")
    assert not (datasets_cache / "hf_cache").exists()  # nothing went through datasets' builder


def test_hub_save_to_disk(datasets_cache):
    import datasets

    datasets.DatasetDict({"train": cifar_like_dataset(), "validation": cifar_like_dataset().select([0, 1])}).save_to_disk(
        str(datasets_cache / "saved")
    )
    saved = load_image_datasets(DataConfig(source=str(datasets_cache / "saved"), image_column="img", label_column="fine_label"))
    assert saved.split_names["eval"] == "validation" and len(saved.eval) == 2 and len(saved.train) == 6


def test_hub_id_offline_raises_data_error_naming_it():
    with pytest.raises(DataError, match="no-such-owner/no-such-dataset"):
        load_image_datasets(DataConfig(source="no-such-owner/no-such-dataset"))


# --- built-ins ---------------------------------------------------------------------------------


def test_digits_split_is_the_fixed_one_the_shipped_numbers_use():
    """sklearn's train_test_split(test_size=0.5, stratify, random_state=0): which digit lands where is pinned."""
    import hashlib

    train = load_image_datasets(DataConfig(source="sklearn:digits", eval_split="none")).train
    assert hashlib.sha256(train.images.tobytes()).hexdigest()[:16] == "aa7587ae5fe978d0"
    assert train.labels[:10].tolist() == [3, 5, 7, 8, 9, 3, 4, 5, 6, 8]


def test_probe_holdout_is_the_data_stratified_split():
    import torch

    from vit_transfer.probe.run import stratified_holdout

    labels = np.repeat(np.arange(4), [3, 7, 20, 50])
    keep, held = stratified_holdout(torch.from_numpy(labels), 0.2, seed=5)
    expected = stratified_split(labels, 0.2, seed=5)
    assert keep.tolist() == expected[0].tolist() and held.tolist() == expected[1].tolist()


def test_digits_split_is_stratified_fixed_and_scaled():
    from sklearn.datasets import load_digits

    cfg = DataConfig(source="sklearn:digits", eval_split="none")
    first, second = load_image_datasets(cfg), load_image_datasets(cfg)
    assert (len(first.train), len(first.test)) == (898, 899)
    assert first.id2label == {i: str(i) for i in range(10)}
    np.testing.assert_array_equal(first.train.labels, second.train.labels)
    assert first.fingerprint("test") == second.fingerprint("test")
    full = np.bincount(load_digits().target)
    assert np.all(np.abs(np.bincount(first.train.labels) - full / 2) <= 1)
    pixels = np.stack([np.asarray(first.train[i][0]) for i in range(len(first.train))])
    assert pixels.shape == (898, 8, 8) and pixels.dtype == np.uint8 and pixels.max() == 255


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_has_60000_10000_and_class_names():
    ds = load_image_datasets(DataConfig(source="fashion-mnist", eval_split="none"))
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.id2label[0] == "T-shirt/top" and ds.id2label[9] == "Ankle boot" and ds.num_labels == 10
    image, label = ds.train[0]
    assert image.mode == "L" and image.size == (28, 28) and label == 9
    assert counts(ds.test) == [1000] * 10


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_column_lists_the_available_ones(tmp_path):
    (tmp_path / "t.csv").write_text("path,y\na.png,1\n")
    with pytest.raises(DataError, match=r"column 'label' not found.*path, y.*data.label_column"):
        load_image_datasets(DataConfig(source=str(tmp_path / "t.csv"), image_column="path"))


@pytest.mark.parametrize("fmt", ["auto", "imagefolder", "csv", "idx"])
def test_missing_path_names_it(tmp_path, fmt):
    missing = tmp_path / "nowhere" / ("x.csv" if fmt == "csv" else "x")
    with pytest.raises(DataError, match=str(missing)):
        load_image_datasets(DataConfig(source=str(missing), format=fmt))


def test_unknown_split_lists_the_splits(image_folder):
    with pytest.raises(DataError, match=r"'validation'.*available splits: test, train"):
        load_image_datasets(DataConfig(source=str(image_folder), eval_split="validation"))


def test_empty_folder_is_a_data_error(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_image_datasets(DataConfig(source=str(tmp_path)))


# --- splits, caps, fingerprints ----------------------------------------------------------------------


def test_stratified_split_keeps_every_class_and_repeats_per_seed():
    labels = np.repeat(np.arange(5), [2, 3, 10, 40, 45])
    keep, carved = stratified_split(labels, 0.1, seed=3)
    assert set(labels[keep]) == set(labels[carved]) == set(range(5))
    assert np.bincount(labels[carved]).tolist() == [1, 1, 1, 4, 4]  # at least one, else round(10%)
    assert len(np.intersect1d(keep, carved)) == 0 and len(keep) + len(carved) == len(labels)
    again_keep, again_carved = stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(carved, again_carved)
    assert not np.array_equal(carved, stratified_split(labels, 0.1, seed=4)[1])


def test_stratified_subset_keeps_proportions():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    chosen = stratified_subset(labels, 10, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(chosen, stratified_subset(labels, 10, seed=0))


def test_caps_are_stratified(image_folder):
    ds = load_image_datasets(
        DataConfig(source=str(image_folder), val_fraction=0.25, max_train_samples=9, max_eval_samples=3, max_test_samples=6)
    )
    assert counts(ds.train) == [3, 3, 3] and counts(ds.eval) == [1, 1, 1] and counts(ds.test) == [2, 2, 2]


def test_fingerprint_tracks_content_and_config(tmp_path):
    root = write_image_folder(tmp_path / "imgs", num_classes=2, per_class=4)
    cfg = DataConfig(source=str(root))
    before = load_image_datasets(cfg)
    assert before.fingerprint("train") == load_image_datasets(cfg).fingerprint("train")
    assert len({before.fingerprint(s) for s in ("train", "eval", "test")}) == 3
    capped = load_image_datasets(DataConfig(source=str(root), max_train_samples=4))
    assert capped.fingerprint("train") != before.fingerprint("train")
    assert capped.fingerprint("test") == before.fingerprint("test")
    Image.new("RGB", (33, 32), (1, 2, 3)).save(root / "test" / "class_0" / "0.png")  # new size, new bytes
    assert load_image_datasets(cfg).fingerprint("test") != before.fingerprint("test")
    with pytest.raises(DataError, match="unknown split 'validation'"):
        before.fingerprint("validation")


def test_recipe_key_data_balance_is_a_checked_boolean():
    from vit_transfer.config import load_recipe
    from vit_transfer.errors import ConfigError
    from vit_transfer.training import TrainRecipe

    assert load_recipe(None, [], TrainRecipe).data.balance is False
    assert load_recipe(None, ["data.balance=true"], TrainRecipe).data.balance is True
    with pytest.raises(ConfigError, match="data.balance"):
        load_recipe(None, ["data.balance=sometimes"], TrainRecipe)
