"""What ``predict`` reads: image files, folders (recursive) and CSV/parquet tables of images."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..data.images import IMAGE_EXTENSIONS, image_files
from ..data.sources import TABLE_SUFFIXES
from ..errors import DataError


def collect_images(inputs: "str | Path | Iterable[str | Path]", image_column: str = "image") -> "list[str | bytes]":
    """Image references in the order given: a file as it is (a non-image is reported as undecodable,
    never silently dropped), a folder's image files sorted and recursive, a table's image column (paths
    relative to the table, or encoded bytes in parquet)."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    refs: list = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise DataError(f"{path} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            refs.extend(found)
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            refs.extend(_table_images(path, image_column))
        elif path.is_file():
            refs.append(str(path))
        else:
            raise DataError(f"no such image, folder or table: {path}")
    if not refs:
        raise DataError("no images to predict: pass image files, folders or a CSV/parquet table")
    return refs


def _table_images(path: Path, image_column: str) -> "list[str | bytes]":
    from ..data.table import _image_refs, read_table

    table = read_table(path, TABLE_SUFFIXES[path.suffix.lower()])
    if image_column not in table.columns:
        raise DataError(f"column {image_column!r} not found in {path}; available columns: "
                        f"{', '.join(map(str, table.columns))} (pass --image-column / image_column=)")
    return _image_refs(table[image_column].dropna().tolist(), path.parent, str(path))
