"""Image datasets that know their labels without decoding a single image.

Every source becomes an ``ImageDataset``: ``ds[i]`` is ``(PIL.Image | None, label)``, where
``None`` marks an image that could not be decoded (the collate function drops and counts it).
Labels live in a numpy array so splits can be stratified and capped without touching pixels,
and ``content_key()`` gives a stable hash of what the dataset holds (the feature-cache key).
"""

from __future__ import annotations

import abc
import hashlib
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .images import DECODE_ERRORS, decode_image


def digest(*parts: "str | bytes") -> str:
    """A short hex hash of strings/bytes; the one hash every fingerprint in this package uses."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


class ImageDataset(torch.utils.data.Dataset, abc.ABC):
    """Indexable ``(image or None, label)`` pairs with labels known up front."""

    labels: np.ndarray  # int64, one per item

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> "tuple[Image.Image | None, int]":
        image, label, _ = self.try_load(index)
        return image, label

    def try_load(self, index: int) -> "tuple[Image.Image | None, int, str | None]":
        """``(image, label, None)``, or ``(None, label, reason)`` when the image cannot be decoded."""
        label = int(self.labels[index])  # IndexError past the end, as sequences should
        try:
            return self.load_image(index), label, None
        except DECODE_ERRORS as exc:  # a bad image becomes a skipped item; a bug still raises
            return None, label, f"{type(exc).__name__}: {exc}"

    @abc.abstractmethod
    def load_image(self, index: int) -> Image.Image:
        """Decode item ``index``; may raise on a corrupt or missing image."""

    def describe(self, index: int) -> str:
        """A human name for item ``index`` (its file, when there is one) for warnings."""
        return f"item {index}"

    @abc.abstractmethod
    def content_key(self) -> str:
        """A stable hash of the images this dataset serves (not of its labels)."""

    def subset(self, indices: "Sequence[int] | np.ndarray") -> "ImageSubset":
        return ImageSubset(self, np.asarray(indices, dtype=np.int64))

    def _set_labels(self, images: Sequence, labels: np.ndarray, name: str) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.labels, self.name, self._key = np.asarray(labels, dtype=np.int64), name, None


class ImageSubset(ImageDataset):
    """A view of some items of another ``ImageDataset`` (a carved or capped split)."""

    def __init__(self, parent: ImageDataset, indices: np.ndarray):
        self.parent = parent
        self.indices = indices
        self.labels = parent.labels[indices]

    def load_image(self, index: int) -> Image.Image:
        return self.parent.load_image(int(self.indices[index]))

    def describe(self, index: int) -> str:
        return self.parent.describe(int(self.indices[index]))

    def content_key(self) -> str:
        return digest(self.parent.content_key(), self.indices.tobytes())

    def subset(self, indices) -> "ImageSubset":
        return ImageSubset(self.parent, self.indices[np.asarray(indices, dtype=np.int64)])


class ArrayImageDataset(ImageDataset):
    """Images held as one uint8 array ``(N, H, W)`` or ``(N, H, W, C)``; PIL images made per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "array"):
        if images.dtype != np.uint8:
            raise TypeError(f"{name}: expected uint8 pixels, got {images.dtype}")
        self.images = images
        self._set_labels(images, labels, name)

    def load_image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"

    def content_key(self) -> str:
        if self._key is None:
            self._key = digest(str(self.images.shape), np.ascontiguousarray(self.images).data)
        return self._key


class FileImageDataset(ImageDataset):
    """Images referenced by path (or held as encoded bytes, e.g. from a parquet column)."""

    def __init__(self, refs: "Sequence[str | bytes]", labels: np.ndarray, name: str = "files"):
        self.refs = list(refs)
        self._set_labels(refs, labels, name)

    def load_image(self, index: int) -> Image.Image:
        return decode_image(self.refs[index])

    def describe(self, index: int) -> str:
        ref = self.refs[index]
        return ref if isinstance(ref, str) else f"{self.name}[{index}] ({len(ref)} bytes)"

    def content_key(self) -> str:
        """Hash of file names, sizes and modification times (bytes are hashed for in-memory images)."""
        if self._key is None:
            h = hashlib.sha256()
            for ref in tqdm(self.refs, desc=f"fingerprint {self.name}", unit="file", disable=len(self.refs) < 20000):
                if isinstance(ref, str):
                    try:
                        st = os.stat(ref)
                        h.update(f"{ref}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                    except OSError:
                        h.update(f"{ref}\0missing\n".encode())
                else:
                    h.update(hashlib.sha256(ref).digest())
            self._key = h.hexdigest()[:32]
        return self._key


def encode_labels(
    values_by_split: "dict[str, Sequence]", names: "Sequence[str] | None" = None
) -> "tuple[dict[str, np.ndarray], dict[int, str]]":
    """Integer ids per split and one ``id2label`` shared by all splits.

    With ``names`` (a ClassLabel's names) the values already are ids. Otherwise the classes are the
    sorted unique values over all splits (strings or numbers) and an id is a position in that order.
    """
    if names is not None:
        ids = {split: np.asarray(v, dtype=np.int64).reshape(-1) for split, v in values_by_split.items()}
        return ids, {i: str(n) for i, n in enumerate(names)}
    arrays = {split: np.asarray(list(v) if not isinstance(v, np.ndarray) else v) for split, v in values_by_split.items()}
    if any(a.dtype == object for a in arrays.values()):  # mixed types: compare as text
        arrays = {split: a.astype(str) for split, a in arrays.items()}
    classes = np.unique(np.concatenate([a.reshape(-1) for a in arrays.values()]))
    ids = {split: np.searchsorted(classes, a.reshape(-1)).astype(np.int64) for split, a in arrays.items()}
    return ids, {i: _label_name(c) for i, c in enumerate(classes.tolist())}


def _label_name(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class SourceSplits:
    """What a source reader returns: its named splits and the label names they share."""

    def __init__(self, splits: "dict[str, ImageDataset]", id2label: "dict[int, str]", format: str):
        self.splits = splits
        self.id2label = id2label
        self.format = format
