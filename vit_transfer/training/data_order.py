"""Reproducible training data: the same order and the same augmentations, whatever happens.

Resuming mid-epoch must replay exactly the batches an uninterrupted run would have seen. The loop
therefore trains only on loaders whose order is a pure function of ``(seed, epoch)`` and whose
batches are built under seeds derived from their keys (``data.loader.EpochShuffle`` and
``SeededBatches``). A loader from ``make_dataloader`` already is one; a plain sequential or
shuffling DataLoader is re-issued as one; any other sampler is refused, since its draws could not
be replayed.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, RandomSampler, SequentialSampler

from ..data.loader import EpochShuffle, SeededBatches, seeded_loader
from ..errors import ConfigError


def reproducible_loader(loader: DataLoader, seed: int) -> tuple[DataLoader, EpochShuffle]:
    """``loader``'s data (dataset, collate, batch size, workers) in the seeded order for ``seed``.

    Returns the loader and its sampler (call ``set_epoch`` before each epoch). A ``make_dataloader``
    loader keeps its order (shuffled, sequential or class-balanced), re-seeded with ``seed``.
    """
    sampler = loader.sampler
    if isinstance(loader.dataset, SeededBatches):
        if sampler.seed == seed:
            return loader, sampler
        dataset, collate = loader.dataset.dataset, loader.dataset.collate_fn
        sampler = EpochShuffle(sampler.num_samples, seed, sampler.shuffle, sampler.weights)
    elif loader.batch_size is not None and (
        type(sampler) is SequentialSampler
        or (type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None)
    ):
        dataset, collate = loader.dataset, loader.collate_fn
        sampler = EpochShuffle(len(dataset), seed, shuffle=type(sampler) is RandomSampler)
    else:
        custom = type(loader.batch_sampler if loader.batch_size is None else sampler).__name__
        raise ConfigError(
            f"the training DataLoader's {custom} cannot be replayed exactly when a run resumes; build it with "
            f"vit_transfer.data.make_dataloader (shuffle=True, or balance=True for class-balanced sampling: "
            f"recipe data.balance: true), or use a plain DataLoader with shuffle=True/False"
        )
    kwargs = dict(batch_size=loader.batch_size, drop_last=loader.drop_last, num_workers=loader.num_workers,
                  pin_memory=loader.pin_memory, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                  multiprocessing_context=loader.multiprocessing_context,
                  persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return seeded_loader(dataset, collate, sampler, **kwargs), sampler
