"""Datasets available offline: scikit-learn's digits and the Debian-packaged Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayImageDataset, SourceSplits
from .idx import find_idx_splits, read_idx

DIGITS_SOURCES = ("sklearn:digits", "digits")
FASHION_MNIST_SOURCES = ("fashion-mnist", "fashion_mnist", "fashion-mnist:local")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGITS_SPLIT_SEED = 0  # fixed: the digits train/test split is part of the dataset, not of a run


def load_digits_splits() -> SourceSplits:
    """1,797 8x8 grey digits (0..16 scaled to 0..255), split 50/50 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.5, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    splits = {
        "train": ArrayImageDataset(images[train_idx], labels[train_idx], name="digits/train"),
        "test": ArrayImageDataset(images[test_idx], labels[test_idx], name="digits/test"),
    }
    return SourceSplits(splits, {i: str(i) for i in range(10)}, "digits")


def load_idx_folder(folder: "str | Path", class_names: "tuple[str, ...] | None" = None) -> SourceSplits:
    """Every ``<split>-images-idx3-ubyte[.gz]`` / ``<split>-labels-idx1-ubyte[.gz]`` pair in ``folder``.

    Class names come from ``class_names``, else a ``classes.txt`` (one per line) in the folder,
    else the label values themselves.
    """
    folder = Path(folder)
    splits = {}
    for split, (images_file, labels_file) in find_idx_splits(folder).items():
        images, labels = read_idx(images_file), read_idx(labels_file)
        if images.dtype != np.uint8:
            raise DataError(f"{images_file}: expected uint8 pixels, got {images.dtype}")
        if len(images) != len(labels):
            raise DataError(f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} labels")
        splits[split] = ArrayImageDataset(images, labels.astype(np.int64), name=f"{folder.name}/{split}")
    if class_names is None and (folder / "classes.txt").is_file():
        class_names = tuple(line.strip() for line in (folder / "classes.txt").read_text().splitlines() if line.strip())
    num_labels = int(max(ds.labels.max() for ds in splits.values())) + 1
    if class_names is None:
        class_names = tuple(str(i) for i in range(num_labels))
    if len(class_names) < num_labels:
        raise DataError(f"{folder}: labels go up to {num_labels - 1} but only {len(class_names)} class names are given")
    return SourceSplits(splits, dict(enumerate(class_names)), "idx")


def load_fashion_mnist(folder: "str | Path" = FASHION_MNIST_DIR) -> SourceSplits:
    """Fashion-MNIST's 60,000 train / 10,000 test 28x28 grey images with the real class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Fashion-MNIST not found at {folder}: install it with `apt-get install dataset-fashion-mnist` "
            f"or point data.source at a folder of its idx files"
        )
    return load_idx_folder(folder, FASHION_MNIST_CLASSES)
