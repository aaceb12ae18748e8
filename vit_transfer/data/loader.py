"""DataLoaders that never crash on a bad image and shuffle the same way for the same seed.

Undecodable images: the dataset item is ``None``; ``SkipUndecodable`` drops it from the batch,
warns once per item (per process) naming it, and counts it in ``batch["num_skipped"]``. A batch
whose every image failed still comes out, with zero rows (``pixel_values`` ``(0, 3, H, W)``).

Order: ``EpochShuffleSampler`` draws epoch ``e``'s permutation from ``torch.Generator`` seeded
with ``seed + e``. The epoch advances by itself on every pass, and ``set_epoch`` (which
Accelerate's prepared loaders call) pins it, so a resumed run can rebuild the exact order and
``accelerate.skip_first_batches`` lands on the same images.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class UndecodableImageWarning(UserWarning):
    """An image could not be decoded and was left out of its batch."""


_warned: set[str] = set()


class TransformedItems(Dataset):
    """``(tensor or None, label, failure)`` items: the transform applied, failures caught.

    ``failure`` is ``None`` or ``(item name, reason)``.
    """

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def _name(self, index: int) -> str:
        return self.dataset.describe(index) if hasattr(self.dataset, "describe") else f"item {index}"

    def __getitem__(self, index: int):
        if hasattr(self.dataset, "try_load"):
            image, label, reason = self.dataset.try_load(index)
        else:
            (image, label), reason = self.dataset[index], None
        if image is None:
            return None, int(label), (self._name(index), reason or "no image")
        try:
            return self.transform(image), int(label), None
        except Exception as exc:  # a decoded image the transform cannot handle: skip it too
            return None, int(label), (self._name(index), f"{type(exc).__name__}: {exc}")


class SkipUndecodable:
    """Collate function: stack the good items, drop and count the undecodable ones."""

    def __init__(self, image_size: "tuple[int, int] | None" = None):
        self.image_size = image_size

    def __call__(self, items: list) -> dict:
        good = [(x, y) for x, y, _ in items if x is not None]
        for _, _, failure in items:
            if failure is not None and failure[0] not in _warned:
                _warned.add(failure[0])
                warnings.warn(
                    f"skipping an image that cannot be decoded: {failure[0]} ({failure[1]})",
                    UndecodableImageWarning,
                    stacklevel=2,
                )
        skipped = torch.tensor(len(items) - len(good), dtype=torch.long)
        if good:
            pixel_values = torch.stack([x for x, _ in good])
            labels = torch.tensor([y for _, y in good], dtype=torch.long)
        else:
            h, w = self.image_size or (0, 0)
            pixel_values = torch.zeros(0, 3, h, w)
            labels = torch.zeros(0, dtype=torch.long)
        return {"pixel_values": pixel_values, "labels": labels, "num_skipped": skipped}


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch from ``torch.Generator().manual_seed(seed + epoch)``."""

    def __init__(self, num_items: int, seed: int = 0):
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.epoch)
        self.epoch += 1  # the next pass is the next epoch unless set_epoch says otherwise
        return iter(order)

    def __len__(self) -> int:
        return self.num_items


def make_dataloader(
    dataset: Dataset,
    transform: Callable,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Batches ``{"pixel_values", "labels", "num_skipped"}`` of ``dataset`` through ``transform``."""
    if batch_size <= 0:
        from ..errors import ConfigError

        raise ConfigError(f"batch size must be positive, got {batch_size}")
    items = TransformedItems(dataset, transform)
    return DataLoader(
        items,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(items), seed) if shuffle else None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=SkipUndecodable(getattr(transform, "image_size", None)),
        generator=torch.Generator().manual_seed(seed),  # seeds the workers' random augmentation
    )
