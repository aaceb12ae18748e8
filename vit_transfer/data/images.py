"""Decoding image files and bringing every image mode to 8-bit RGB.

Decoding is forced (``Image.load()``) so a truncated file fails here, inside the dataset item,
where it can be turned into a skipped item, rather than later inside a transform.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# What PIL raises on unreadable, truncated, missing or oversized files (measured by corrupting files of
# every common format): such an image is skipped; anything else is a bug and propagates.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError, Image.DecompressionBombWarning)
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)


def is_image_file(path: "str | Path") -> bool:
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def image_files(folder: "str | Path") -> list[str]:
    """Every image file under ``folder`` (recursive, hidden folders skipped), sorted: the one folder walk of
    image folders, ``predict`` and ``inspect``."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(os.path.join(dirpath, f) for f in filenames if is_image_file(f))
    return sorted(files)


def decode_image(data: "str | Path | bytes") -> Image.Image:
    """Open and fully decode an image from a path or encoded bytes; raises on any corruption."""
    in_memory = isinstance(data, (bytes, bytearray, memoryview))
    try:
        image = Image.open(io.BytesIO(data) if in_memory else data)
    except UnidentifiedImageError:
        if in_memory:  # PIL's message would name a BytesIO object's address
            raise UnidentifiedImageError(f"cannot identify image data ({len(data)} bytes)") from None
        raise
    with image:
        image.load()  # the first frame of an animation
        return image.copy()  # detached from the file, which the context closes


def to_rgb(image: "Image.Image | np.ndarray") -> Image.Image:
    """An 8-bit RGB copy of any PIL mode: grey, palette, alpha (over white), CMYK, 16-bit, float."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale high-bit-depth pixels to 0..255: 16-bit by 257, floats in [0, 1] by 255.

    ``I;16*`` is 16-bit by definition; 32-bit ``I`` (how PIL opens some 16-bit PNGs) is taken as
    16-bit when any value exceeds 255.
    """
    values = values.astype(np.float64)
    if mode == "F":
        if values.size and values.max() <= 1.0:
            values = values * 255.0
    elif mode.startswith("I;16") or (values.size and values.max() > 255):
        values = values / 257.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
