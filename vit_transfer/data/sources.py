"""Which reader a ``data.source`` needs (``format: auto``), and the call into that reader."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .base import SourceSplits
from .builtin import DIGITS_SOURCES, FASHION_MNIST_SOURCES, load_digits_splits, load_fashion_mnist, load_idx_folder
from .config import DataConfig
from .idx import looks_like_idx_folder

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
HUB_DATA_SUFFIXES = {".arrow", ".parquet"}
FORMATS = ("auto", "hub", "imagefolder", "csv", "parquet", "idx", "digits")


def detect_format(source: str) -> str:
    """The reader for ``source``: a built-in name, a local path's kind, or else a Hub id."""
    if source in DIGITS_SOURCES:
        return "digits"
    if source in FASHION_MNIST_SOURCES:
        return "idx"
    path = Path(source).expanduser()
    if path.is_file():
        kind = TABLE_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise DataError(
                f"cannot tell the format of {path}: use a .csv/.tsv/.parquet table, a folder, or set data.format"
            )
        return kind
    if path.is_dir():
        if looks_like_idx_folder(path):
            return "idx"
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists() or _has_hub_data_files(path):
            return "hub"
        return "imagefolder"
    if _looks_like_path(source):
        raise DataError(f"data source not found: {path} (no such file or folder)")
    return "hub"


def read_source(cfg: DataConfig) -> SourceSplits:
    """Open ``cfg.source`` with the reader ``cfg.format`` names (detected when ``auto``)."""
    if cfg.format not in FORMATS:
        raise DataError(f"unknown data.format {cfg.format!r}; use one of {', '.join(FORMATS)}")
    kind = detect_format(cfg.source) if cfg.format == "auto" else cfg.format
    if kind == "hub" and detect_format(cfg.source) == "imagefolder":
        kind = "imagefolder"  # one image-folder reader; datasets' builder drops nested classes' labels
    if kind == "digits":
        return load_digits_splits()
    if kind == "idx" and cfg.source in FASHION_MNIST_SOURCES:
        return load_fashion_mnist()
    if kind == "hub":
        from .hub import load_hub

        return load_hub(cfg.source, cfg.image_column, cfg.label_column, cfg.hub_config)
    path = Path(cfg.source).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {path} (data.format is {kind!r}, which reads local files)")
    if kind == "imagefolder":
        from .folder import load_image_folder

        _require_dir(path, kind)
        return load_image_folder(path)
    if kind == "idx":
        _require_dir(path, kind)
        return load_idx_folder(path)
    if kind in ("csv", "parquet"):
        from .table import load_table

        if not path.is_file():
            raise DataError(f"data.format {kind!r} needs a file, but {path} is a folder")
        return load_table(path, kind, cfg.image_column, cfg.label_column)
    raise AssertionError(kind)


def _require_dir(path: Path, kind: str) -> None:
    if not path.is_dir():
        raise DataError(f"data.format {kind!r} needs a folder, but {path} is a file")


def _looks_like_path(source: str) -> bool:
    """A source written as a path (not ``owner/name``): absolute, ``./``, ``~`` or with a file suffix."""
    return (
        source.startswith(("/", "./", "../", "~", ".\\"))
        or os.path.isabs(source)
        or Path(source).suffix.lower() in TABLE_SUFFIXES
        or source.count("/") > 1
    )


def _has_hub_data_files(folder: Path) -> bool:
    """Data files ``load_dataset`` reads (parquet/arrow/...) at the top or in a ``data/`` folder."""
    for where in (folder, folder / "data"):
        if where.is_dir() and any(
            e.is_file() and Path(e.name).suffix.lower() in HUB_DATA_SUFFIXES for e in os.scandir(where)
        ):
            return True
    return False
