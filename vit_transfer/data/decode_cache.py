"""Decode a split's images once, into memory, instead of once per epoch.

Why: small encoded images (CIFAR's 32 px PNGs on the Hub, a folder of thumbnails) cost more to decode
than to augment, and a many-epoch fine-tune decodes each one per epoch, per worker. When a split's
decoded pixels fit ``data.decode_cache_mib``, ``cache_decoded`` decodes every image once in the main
process (workers, forked, then share the pages) and serves copies of the decoded ``PIL`` images: the
same pixels the per-epoch decode would give, so augmentations, exact resume and the count of skipped
images do not change. An image that cannot be decoded is remembered with its reason and skipped as
before. Splits already held as arrays (digits, Fashion-MNIST) need no cache and are returned as they are.
"""

from __future__ import annotations

import warnings

from PIL import Image
from tqdm.auto import tqdm

from .base import ArrayImageDataset, ImageDataset, ImageSubset

MIB = 1 << 20
SAMPLE = 32  # images decoded to estimate a split's decoded size
_BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4, "1": 1}


def decoded_bytes(image: Image.Image) -> int:
    """Memory the decoded image holds (PIL keeps one or more bytes per band and pixel)."""
    return image.width * image.height * len(image.getbands()) * _BYTES_PER_BAND.get(image.mode, 1)


def _held_as_arrays(dataset: ImageDataset) -> bool:
    while isinstance(dataset, ImageSubset):
        dataset = dataset.parent
    return isinstance(dataset, ArrayImageDataset)


class DecodedImages(ImageDataset):
    """``dataset`` with every image decoded up front; ``try_load`` returns copies of them."""

    def __init__(self, dataset: ImageDataset, images: list, reasons: dict[int, str]):
        self.dataset, self.images, self.reasons = dataset, images, reasons
        self.labels = dataset.labels
        self.nbytes = sum(decoded_bytes(im) for im in images if im is not None)

    def try_load(self, index: int):
        label = int(self.labels[index])
        image = self.images[index]
        if image is None:
            return None, label, self.reasons[index]
        return image.copy(), label, None  # a transform may not mutate the cached image

    def load_image(self, index: int) -> Image.Image:
        image, _, reason = self.try_load(index)
        if image is None:
            raise OSError(reason)
        return image

    def describe(self, index: int) -> str:
        return self.dataset.describe(index)

    def content_key(self) -> str:
        return self.dataset.content_key()  # the same images: the feature cache and fingerprints stay valid

    def subset(self, indices) -> ImageDataset:
        return self.dataset.subset(indices)


def cache_decoded(dataset: "ImageDataset | None", budget_mib: int, name: str = "") -> "ImageDataset | None":
    """``dataset`` decoded into memory (a ``DecodedImages``) if its pixels fit ``budget_mib``, else itself.

    A sample of ``SAMPLE`` images, evenly spread, estimates the size first, so a split of large photos is
    left to decode per epoch (as before) after a few milliseconds, not after filling the budget. Should the
    estimate be wrong, the decode stops with a warning at the first image that overflows the budget.
    """
    if dataset is None or budget_mib <= 0 or _held_as_arrays(dataset) or isinstance(dataset, DecodedImages):
        return dataset
    if not hasattr(dataset, "try_load") or len(dataset) == 0:
        return dataset  # a user dataset without the ImageDataset protocol: left as it is
    budget, used = budget_mib * MIB, 0
    step = max(1, len(dataset) // SAMPLE)
    sample = [dataset.try_load(i)[0] for i in range(0, len(dataset), step)]
    sizes = [decoded_bytes(im) for im in sample if im is not None]
    if sizes and sum(sizes) / len(sizes) * len(dataset) > budget:
        return dataset
    images: list = []
    reasons: dict[int, str] = {}
    for index in tqdm(range(len(dataset)), desc=f"decode {name or 'images'} once", unit="img",
                      disable=len(dataset) < 2000, leave=False):
        image, _, reason = dataset.try_load(index)
        if image is not None:
            used += decoded_bytes(image)
            if used > budget:
                warnings.warn(f"the decoded {name or 'split'} needs more than data.decode_cache_mib={budget_mib} MiB "
                              f"(reached at image {index} of {len(dataset)}); its images are decoded each epoch "
                              "instead. Raise data.decode_cache_mib to cache them", stacklevel=2)
                return dataset
        else:
            reasons[index] = reason or "no image"
        images.append(image)
    return DecodedImages(dataset, images, reasons)
