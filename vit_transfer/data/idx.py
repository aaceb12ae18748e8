"""The idx format of MNIST and Fashion-MNIST: a tiny binary header, then one big-endian array.

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian int32. Files may be gzip-compressed (``.gz``, detected by their magic bytes).
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILE = re.compile(r"^(?P<split>.+?)[-_.](?P<kind>images|labels)[-_.]idx(?P<ndim>\d)[-_.]ubyte(\.gz)?$")
SPLIT_ALIASES = {"t10k": "test"}  # MNIST names its test files t10k-*


def read_idx(path: "str | Path") -> np.ndarray:
    """The array stored in an idx file (gzip or not), as native-endian numpy."""
    path = Path(path)
    return _read_idx_cached(str(path), *_stat_key(path))


def _stat_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        raise DataError(f"idx file not found: {path}") from None
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: idx header says shape {shape} ({expected} bytes) but the file holds {len(raw)} bytes")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    array = array.astype(dtype.newbyteorder("="), copy=False)
    array.flags.writeable = False  # shared by the cache
    return array


def find_idx_splits(folder: "str | Path") -> dict[str, tuple[Path, Path]]:
    """``{split: (images_file, labels_file)}`` for the idx pairs in ``folder``."""
    folder = Path(folder)
    found: dict[str, dict[str, Path]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        m = IDX_FILE.match(entry.name)
        if m and entry.is_file():
            split = SPLIT_ALIASES.get(m["split"], m["split"])
            found.setdefault(split, {}).setdefault(m["kind"], Path(entry.path))
    pairs = {s: (k["images"], k["labels"]) for s, k in found.items() if "images" in k and "labels" in k}
    if not pairs:
        raise DataError(
            f"no idx image/label pairs in {folder}: expected files like train-images-idx3-ubyte.gz and "
            f"train-labels-idx1-ubyte.gz (found: {', '.join(sorted(os.listdir(folder))[:10]) or 'nothing'})"
        )
    return pairs


def looks_like_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and any(IDX_FILE.match(name) for name in os.listdir(folder))
