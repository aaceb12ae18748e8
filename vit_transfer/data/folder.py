"""Local image folders: ``root/<class>/<image>``, optionally under split folders ``root/<split>/``.

A root with a ``train`` sub-folder is split-organised and every sub-folder is a split
(``train``, ``test``, ``validation``...). Otherwise the sub-folders are classes of one ``train``
split. Class names are the sorted folder names of the train split; other splits must not add
classes. Files whose extension is not an image's (README, .DS_Store) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import FileImageDataset, SourceSplits
from .images import image_files


def load_image_folder(root: "str | Path") -> SourceSplits:
    root = Path(root)
    subdirs = _subdirs(root)
    if "train" in subdirs and _subdirs(root / "train"):
        split_dirs = {name: root / name for name in subdirs}
    else:
        split_dirs = {"train": root}
    class_files = {split: _class_files(folder) for split, folder in split_dirs.items()}
    class_files = {split: files for split, files in class_files.items() if files}
    if "train" not in class_files:
        raise DataError(
            f"no images found under {split_dirs['train']}: an image folder holds <class>/<image> "
            f"(optionally under train/ and test/); found sub-folders: {', '.join(subdirs) or 'none'}"
        )
    classes = sorted(class_files["train"])
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, files in class_files.items():
        extra = sorted(set(files) - set(index))
        if extra:
            raise DataError(
                f"{split_dirs[split]} has classes the train split lacks: {', '.join(extra)}; "
                f"every class needs training images (train classes: {', '.join(classes)})"
            )
        refs = [path for name in sorted(files) for path in files[name]]
        labels = np.asarray([index[name] for name in sorted(files) for _ in files[name]], dtype=np.int64)
        splits[split] = FileImageDataset(refs, labels, name=f"{root.name}/{split}")
    return SourceSplits(splits, {i: name for i, name in enumerate(classes)}, "imagefolder")


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _class_files(folder: Path) -> dict[str, list[str]]:
    """``{class name: sorted image paths}`` for the class sub-folders of ``folder`` (recursive)."""
    out = {}
    for name in _subdirs(folder):
        files = image_files(folder / name)
        if files:
            out[name] = files
    return out
