"""Reproducible training data: the same order and the same augmentations, whatever happens.

Resuming mid-epoch must replay exactly the batches an uninterrupted run would have seen. So the
shuffle is a pure function of ``(seed, epoch)``, and each batch is built (decoded, augmented,
collated) with the random generators seeded from ``(seed, epoch, indices)`` and restored afterwards.
Augmentations then depend neither on DataLoader workers, nor on how far the loader has prefetched,
nor on the training loop's own random stream (dropout, mixup), which Accelerate checkpoints.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler


def mix_seed(*values: int) -> int:
    """A well-spread 63-bit seed from a few integers."""
    words = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, np.uint32)
    return int(words.view(np.uint64)[0] >> 1)


@contextmanager
def preserved_rng():
    """Run a block (evaluation) without moving the training loop's random streams."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


@contextmanager
def seeded_rng(seed: int):
    """Seed python, numpy and torch generators for a block, then put their states back."""
    with preserved_rng():
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        yield


class EpochShuffle(Sampler):
    """A permutation of ``range(n)`` fixed by ``(seed, epoch)``; yields ``(epoch, index)`` pairs."""

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = range(self.num_samples)
        epoch = self.epoch
        return iter([(epoch, i) for i in order])


def _identity(batch):
    return batch


class SeededBatches(Dataset):
    """Builds whole batches from ``(epoch, index)`` keys under a seed derived from them."""

    def __init__(self, dataset: Dataset, collate_fn, seed: int):
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.__getitems__([key])

    def __getitems__(self, keys):
        epoch = keys[0][0]
        indices = [i for _, i in keys]
        items = []
        for index in indices:
            with seeded_rng(mix_seed(self.seed, epoch, index)):
                items.append(self.dataset[index])
        with seeded_rng(mix_seed(self.seed, epoch, indices[0], len(indices), 1)):
            return self.collate_fn(items) if self.collate_fn is not None else items


def reproducible_loader(loader: DataLoader, seed: int) -> tuple[DataLoader, EpochShuffle]:
    """The same data as ``loader`` (dataset, collate, batch size, workers) in a seeded, resumable order.

    Returns the new loader and its sampler (call ``set_epoch`` before each epoch). A loader whose
    sampler is not a plain random or sequential one (a custom batch sampler) is rejected, because
    its order could not be replayed.
    """
    if loader.batch_size is None:
        raise ValueError("the training DataLoader must use batch_size (not a custom batch_sampler) to resume exactly")
    shuffle = not isinstance(loader.sampler, SequentialSampler)
    sampler = EpochShuffle(len(loader.dataset), seed=seed, shuffle=shuffle)
    batches = BatchSampler(sampler, batch_size=loader.batch_size, drop_last=loader.drop_last)
    kwargs = dict(num_workers=loader.num_workers, pin_memory=loader.pin_memory, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
                  persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    rebuilt = DataLoader(
        SeededBatches(loader.dataset, loader.collate_fn, seed),
        batch_sampler=batches,
        collate_fn=_identity,
        generator=torch.Generator().manual_seed(seed),  # worker seeds must not draw from the global stream
        **kwargs,
    )
    return rebuilt, sampler
