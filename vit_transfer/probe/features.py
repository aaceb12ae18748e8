"""Frozen-backbone feature extraction: one pass over a dataset, sharded across processes, in order.

Every sample carries its dataset index and a validity flag through the loader, so that

- an undecodable image (the dataset yields ``None``) becomes a zero placeholder that keeps every
  batch the same shape (collectives need equal shapes) and is dropped after gathering;
- the order of the gathered features is *checked* against the dataset order rather than assumed.
  ``Accelerator.gather_for_metrics`` already returns samples in order for a non-shuffled loader with
  accelerate's even batches, and drops the padding duplicates of the last batch; the indices prove it
  and repair it if a custom sampler ever breaks that.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..caller_state import accelerate_state, eval_mode
from ..data.loader import TransformedItems
from ..errors import ConfigError
from ..layers.heads import POOLINGS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Features:
    """Pooled features of one dataset split, in dataset order (skipped samples removed)."""

    features: torch.Tensor  # (N, F) float32, CPU
    labels: torch.Tensor  # (N,) int64
    indices: torch.Tensor  # (N,) int64: the dataset position of each row
    num_skipped: int = 0  # images that could not be decoded

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


class _IndexedImages(Dataset):
    """``(image, label)`` items -> ``(pixels, label, index, valid)``: an undecodable image becomes zeros,
    a transform that fails on a decoded one raises naming the file (``TransformedItems``)."""

    def __init__(self, dataset, transform: Callable, image_size: tuple[int, int]):
        self.items = TransformedItems(dataset, transform)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        pixels, label, _ = self.items[index]
        valid = pixels is not None
        return (pixels if valid else self.placeholder()), label, index, int(valid)

    def placeholder(self) -> torch.Tensor:
        """Zeros in the transform's own dtype and shape (uint8 at the worker size, or float at the model's)."""
        from PIL import Image

        blank = Image.new("RGB", (self.image_size[1], self.image_size[0]))
        return torch.zeros_like(self.items.transform(blank))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision``; ``auto`` follows ``vit_transfer.precision`` (bf16 where native)."""
    from ..precision import autocast_dtype_for

    if precision not in PRECISIONS:
        raise ConfigError(f"probe.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return autocast_dtype_for(precision, device)


def resolved_precision(precision: str, device: torch.device) -> str:
    """``auto`` resolved to what actually runs (part of the feature-cache key)."""
    dtype = autocast_dtype(precision, device)
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def check_pooling(pooling: str, last_n: int) -> None:
    if pooling not in POOLINGS:
        raise ConfigError(f"probe.pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    if not isinstance(last_n, int) or last_n < 1:
        raise ConfigError(f"probe.last_n must be a positive integer (blocks to concatenate), got {last_n!r}")


def extract_features(
    model,
    dataset,
    transform: Callable | None = None,
    *,
    pooling: str = "cls",
    last_n: int = 1,
    batch_size: int = 64,
    precision: str = "auto",
    num_workers: int = 0,
    accelerator=None,
    progress: bool = True,
    desc: str = "features",
) -> Features:
    """Run the frozen backbone once over ``dataset`` (items ``(PIL.Image | None, label)``).

    ``transform`` defaults to the model's eval transform (resize + center crop + normalise). Under
    ``accelerate launch`` each process embeds its shard and every process returns the full, ordered
    result. The model is moved to the accelerator's device and runs in eval mode; its modes are restored after.
    """
    from accelerate import Accelerator

    check_pooling(pooling, last_n)
    if transform is None:
        from ..data import build_transform

        transform = build_transform(model.preprocessing, train=False)
    with contextlib.ExitStack() as scope:  # an accelerator of our own leaves the caller's Accelerate state alone
        if accelerator is None:
            scope.enter_context(accelerate_state())
            accelerator = Accelerator()
        device = accelerator.device
        dtype = autocast_dtype(precision, device)
        model.to(device)

        indexed = _IndexedImages(dataset, transform, tuple(model.image_size))
        loader = DataLoader(indexed, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

        chunks: list[tuple[torch.Tensor, ...]] = []
        bar = tqdm(loader, desc=desc, unit="batch", disable=not (progress and accelerator.is_local_main_process))
        with eval_mode(model), torch.inference_mode():
            for pixels, labels, index, valid in bar:
                with autocast:
                    feats = model.forward_features(pixels, pooling=pooling, last_n=last_n)
                gathered = accelerator.gather_for_metrics((feats.float(), labels, index, valid))
                chunks.append(tuple(t.cpu() for t in gathered))
        if not chunks:
            empty = torch.empty(0, dtype=torch.long)
            return Features(torch.empty(0, model.feature_dim(pooling, last_n)), empty, empty.clone())
        feats, labels, index, valid = (torch.cat(parts) for parts in zip(*chunks))
        feats, labels, index, valid = _in_dataset_order(feats, labels, index, valid)
        keep = valid.bool()
        return Features(
            features=feats[keep].contiguous(),
            labels=labels[keep].long(),
            indices=index[keep].long(),
            num_skipped=int((~keep).sum()),
        )


def _in_dataset_order(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sort by dataset index and drop duplicates (a no-op when the gather already kept order)."""
    index = tensors[2]
    if index.numel() == 0 or bool((index[1:] > index[:-1]).all()):
        return tensors
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    first = torch.ones_like(sorted_index, dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    order = order[first]
    return tuple(t[order] for t in tensors)
