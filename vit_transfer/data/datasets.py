"""``load_image_datasets``: a ``DataConfig`` in, train/eval/test ``ImageDatasets`` out.

Split policy: ``train_split`` must exist. Eval is ``eval_split`` when set, else the source's own
validation split (``validation``/``valid``/``val``/``eval``/``dev``), else ``val_fraction`` of
train carved out (seeded, stratified). Test is ``test_split`` when set, else the source's
``test`` split. ``"none"`` turns eval or test off. Caps (``max_*_samples``) come last and keep
class proportions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError
from .base import ImageDataset, digest
from .config import DataConfig
from .sources import read_source
from .splits import stratified_split, stratified_subset

logger = logging.getLogger(__name__)

VALIDATION_NAMES = ("validation", "valid", "val", "eval", "dev")
SPLITS = ("train", "eval", "test")


@dataclass
class ImageDatasets:
    """The splits a run uses, with the label names they share."""

    train: torch.utils.data.Dataset
    eval: "torch.utils.data.Dataset | None"
    test: "torch.utils.data.Dataset | None"
    id2label: dict[int, str]
    num_labels: int
    source: str = ""
    format: str = ""
    split_names: dict[str, str] = field(default_factory=dict)  # {"eval": "validation" | "carved from train", ...}
    config_key: str = ""  # hash of the settings that shape labels (columns, source, format)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    def split(self, name: str) -> "torch.utils.data.Dataset | None":
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; ImageDatasets has {', '.join(SPLITS)}")
        return getattr(self, name)

    def fingerprint(self, split: str) -> str:
        """A stable hash of one split's images, labels and label names: a feature-cache key."""
        dataset = self.split(split)
        if dataset is None:
            raise DataError(f"the {split} split is empty (turned off or not in {self.source or 'the source'})")
        labels = _labels_of(dataset)
        content = dataset.content_key() if isinstance(dataset, ImageDataset) else _sampled_key(dataset)
        names = "\n".join(f"{i}={n}" for i, n in sorted(self.id2label.items()))
        return digest(self.config_key, content, labels.tobytes(), names)

    def summary(self) -> str:
        parts = [f"{name} {len(ds):,}" for name in SPLITS if (ds := getattr(self, name)) is not None]
        return f"{self.source}: {', '.join(parts)} images, {self.num_labels} classes"


def load_image_datasets(cfg: DataConfig) -> ImageDatasets:
    """Read ``cfg.source`` and form the train/eval/test splits ``cfg`` asks for."""
    found = read_source(cfg)
    available = found.splits

    def pick(name: str, setting: str) -> ImageDataset:
        if name not in available:
            raise DataError(
                f"split {name!r} (data.{setting}) not found in {cfg.source}; available splits: {', '.join(available)}"
            )
        return available[name]

    train = pick(cfg.train_split, "train_split")
    names = {"train": cfg.train_split}

    def choose(role: str, candidates: "tuple[str, ...]") -> "ImageDataset | None":
        """The split ``data.<role>_split`` names, else the source's first of ``candidates`` not in use."""
        name = getattr(cfg, f"{role}_split")
        if name is None:
            name = next((s for s in candidates if s in available and s not in names.values()), None)
        if name is None or _is_off(name):
            return None
        names[role] = name
        return pick(name, f"{role}_split")

    eval_ds = choose("eval", VALIDATION_NAMES)
    if eval_ds is None and cfg.eval_split is None and cfg.val_fraction > 0:
        keep, carved = stratified_split(train.labels, cfg.val_fraction, cfg.split_seed)
        if len(carved) == 0:
            raise DataError(
                f"cannot carve an eval split from {len(train)} training image(s) with data.val_fraction="
                f"{cfg.val_fraction}; add images, or set data.eval_split"
            )
        train, eval_ds = train.subset(keep), train.subset(carved)
        names["eval"] = f"{cfg.val_fraction:g} of {cfg.train_split} (seed {cfg.split_seed})"
    test_ds = choose("test", ("test",))

    train = _cap(train, cfg.max_train_samples, cfg.split_seed)
    eval_ds = _cap(eval_ds, cfg.max_eval_samples, cfg.split_seed)
    test_ds = _cap(test_ds, cfg.max_test_samples, cfg.split_seed)
    if len(train) == 0:
        raise DataError(f"the train split of {cfg.source} holds no images")

    result = ImageDatasets(
        train=train,
        eval=eval_ds,
        test=test_ds,
        id2label=dict(found.id2label),
        num_labels=len(found.id2label),
        source=cfg.source,
        format=found.format,
        split_names=names,
        config_key=digest(found.format, cfg.image_column, cfg.label_column),
    )
    logger.info("%s", result.summary())
    return result


def _is_off(split: "str | None") -> bool:
    return isinstance(split, str) and split.strip().lower() in ("none", "")


def _cap(dataset: "ImageDataset | None", limit: "int | None", seed: int) -> "ImageDataset | None":
    if dataset is None or limit is None or limit >= len(dataset):
        return dataset
    return dataset.subset(stratified_subset(dataset.labels, limit, seed))


def _labels_of(dataset) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.int64)


def _sampled_key(dataset) -> str:
    """For a plain torch Dataset: type, length and the pixels of a few evenly spaced items."""
    n = len(dataset)
    parts: list = [type(dataset).__qualname__, str(n)]
    for i in sorted({int(i) for i in np.linspace(0, n - 1, num=min(n, 8))}) if n else []:
        image = dataset[i][0]
        parts.append(np.asarray(image).tobytes() if image is not None else b"none")
    return digest(*parts)
