"""Datasets through the ``datasets`` library: Hub ids, local data-file dirs and ``save_to_disk`` folders.

Images are read with decoding turned off (``Image(decode=False)``) and decoded per item by
vit-transfer, so one corrupt image becomes a skipped item instead of an exception inside
``datasets``. Labels come from a ``ClassLabel`` feature's names when the column has one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import ImageDataset, SourceSplits, digest, encode_labels
from .images import decode_image
from .table import check_columns


def require_datasets():
    """The ``datasets`` module, imported only here: the rest of vit-transfer runs where it is not installed
    (a bare GPU machine); a missing install is a DataError that names the package."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            "Hub ids, Arrow and save_to_disk folders are read with the `datasets` package, which is not "
            f"installed ({exc}): pip install datasets"
        ) from exc
    return datasets


class HubImageDataset(ImageDataset):
    """One split of a ``datasets.Dataset``; only the image column is read per item."""

    def __init__(self, table, image_column: str, labels: np.ndarray, name: str):
        datasets = require_datasets()

        feature = table.features[image_column]
        if isinstance(feature, datasets.Image) and feature.decode:
            table = table.cast_column(image_column, datasets.Image(decode=False))
        self.table = table.select_columns([image_column])
        self.image_column = image_column
        self.labels = np.asarray(labels, dtype=np.int64)
        self.name = name
        self._fingerprint = table._fingerprint

    def load_image(self, index: int) -> Image.Image:
        value = self.table[int(index)][self.image_column]
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, np.ndarray):
            return Image.fromarray(value)
        if value is None:
            raise ValueError("empty image cell")
        return decode_image(value)

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"

    def content_key(self) -> str:
        return digest("hub", self._fingerprint, self.image_column)


def open_dataset_dict(source: str, config_name: "str | None" = None):
    """``load_dataset`` (Hub id or local data folder) or ``load_from_disk`` (a ``save_to_disk`` folder)."""
    datasets = require_datasets()

    path = Path(source).expanduser()
    try:
        if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path) if path.exists() else source, config_name)
    except Exception as exc:  # offline, unknown id, gated, unreadable files: one clear message
        if path.exists():
            raise DataError(f"could not load dataset {source!r} with the datasets library: "
                            f"{type(exc).__name__}: {exc}") from exc
        raise DataError(_not_found_message(source, path, exc)) from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def _not_found_message(source: str, path: Path, exc: Exception) -> str:
    """Both readings of a source that is not on disk: the local path tried, then the Hub id and why it failed."""
    import datasets

    offline = datasets.config.HF_HUB_OFFLINE
    reason = "offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) and the datasets cache has no copy" if offline \
        else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return (f"data.source {source!r}: the local path {path.resolve()} does not exist, so it was tried as a Hub "
            f"dataset id {source!r}, which failed: {reason}. Fix the path (relative paths start at "
            f"{Path.cwd()}) or the Hub id")


def load_hub(source: str, image_column: str, label_column: str, config_name: "str | None" = None) -> SourceSplits:
    """Every split of ``source`` with labels encoded (a ``ClassLabel``'s names when the column has one)."""
    datasets = require_datasets()

    dataset_dict = open_dataset_dict(source, config_name)
    for split, table in dataset_dict.items():
        check_columns(
            list(table.column_names),
            {"image_column": image_column, "label_column": label_column},
            f"{source} (split {split!r})",
        )
    feature = next(iter(dataset_dict.values())).features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    values = {}
    for split, table in dataset_dict.items():
        column = table.with_format("arrow")[label_column]
        if column.null_count:
            raise DataError(f"{source} (split {split!r}): label column {label_column!r} has {column.null_count} empty value(s)")
        values[split] = column.to_numpy(zero_copy_only=False)
    ids, id2label = encode_labels(values, names)
    splits = {
        split: HubImageDataset(table, image_column, ids[split], name=f"{source}/{split}")
        for split, table in dataset_dict.items()
    }
    return SourceSplits(splits, id2label, "hub")
