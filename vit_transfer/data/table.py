"""A CSV or parquet table of images and labels.

The image column holds paths (relative ones are resolved against the table's folder), or, in
parquet, encoded image bytes (raw, or Hugging Face's ``{"bytes", "path"}`` struct). An optional
``split`` column assigns rows to splits; without it every row is in ``train``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from .base import FileImageDataset, SourceSplits, encode_labels

SPLIT_COLUMN = "split"


def read_table(path: Path, kind: str):
    import pandas as pd

    try:
        if kind == "csv":
            return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        return pd.read_parquet(path)
    except Exception as exc:  # parser errors come in many types
        raise DataError(f"cannot read {path} as {kind}: {exc}") from exc


def check_columns(available: "list[str]", wanted: "dict[str, str]", where: str) -> None:
    """DataError naming each missing column, the available ones, and the setting to change."""
    for setting, column in wanted.items():
        if column not in available:
            raise DataError(
                f"column {column!r} not found in {where}; available columns: {', '.join(map(str, available))} "
                f"(set data.{setting} to one of them)"
            )


def load_table(path: "str | Path", kind: str, image_column: str, label_column: str) -> SourceSplits:
    path = Path(path)
    table = read_table(path, kind)
    check_columns(list(table.columns), {"image_column": image_column, "label_column": label_column}, str(path))
    table = table.dropna(subset=[image_column])
    missing_labels = table[label_column].isna()
    if missing_labels.any():
        raise DataError(
            f"{path}: {int(missing_labels.sum())} row(s) have no value in label column {label_column!r} "
            f"(first at row {int(np.flatnonzero(missing_labels.to_numpy())[0])})"
        )
    refs = _image_refs(table[image_column].tolist(), path.parent, str(path))
    groups = table[SPLIT_COLUMN].astype(str).to_numpy() if SPLIT_COLUMN in table.columns else np.full(len(table), "train")
    rows = {str(s): np.flatnonzero(groups == s) for s in dict.fromkeys(groups.tolist())}
    values = table[label_column].to_numpy()
    ids, id2label = encode_labels({s: values[r] for s, r in rows.items()})
    splits = {s: FileImageDataset([refs[i] for i in r], ids[s], name=f"{path.name}/{s}") for s, r in rows.items()}
    return SourceSplits(splits, id2label, kind)


def _image_refs(values: list, folder: Path, where: str) -> "list[str | bytes]":
    """Absolute paths or encoded bytes; warns (once, with a count) about paths that do not exist."""
    refs: list = []
    missing: list[str] = []
    for value in tqdm(values, desc=f"reading {Path(where).name}", unit="row", disable=len(values) < 10000):
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray)):
            refs.append(bytes(value))
            continue
        if not isinstance(value, str):
            raise DataError(f"{where}: image column holds {type(value).__name__} values; expected paths or image bytes")
        p = os.path.join(folder, os.path.expanduser(value))  # an absolute value stays as it is
        if not os.path.exists(p):
            missing.append(p)
        refs.append(p)
    if missing:
        import warnings

        warnings.warn(
            f"{where}: {len(missing)} of {len(values)} image file(s) do not exist and will be skipped "
            f"(first: {', '.join(missing[:3])})",
            stacklevel=3,
        )
    return refs
