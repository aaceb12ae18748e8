"""A library call leaves its caller's state as it found it: module train/eval flags, the torch random streams
and Accelerate's process-wide state.

Top-level (like ``errors`` and ``metrics``) so that every layer can import it without going up.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for a block; afterwards, even after an error, every submodule gets back its own
    flag. torch ships no such context, and ``model.train(was_training)`` would flatten a caller's mixed modes
    (a frozen backbone kept in eval under a training head)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def accelerate_state() -> Iterator[None]:
    """Accelerate's process-wide state (``PartialState``, ``AcceleratorState``, ``GradientState``) is the caller's
    again after the block, so an ``Accelerator`` a call builds for itself neither resets nor outlives the caller's
    own (its precision, its accumulation). Accelerate ships no way to scope that shared state, hence the copy.
    Under ``accelerate launch`` with several processes the state belongs to the launch and is left alone."""
    import os

    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved = [(cls, dict(cls._shared_state)) for cls in (PartialState, AcceleratorState, GradientState)]
    try:
        yield
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            for cls, state in saved:
                cls._shared_state.clear()
                cls._shared_state.update(state)


@contextmanager
def seeded_torch_rng(seed: int) -> Iterator[None]:
    """Seed torch's global streams (CPU and initialised CUDA devices) for a block, then put the caller's back.

    transformers' and timm's weight initialisers draw from the global stream and take no generator, so a
    seeded block inside ``torch.random.fork_rng`` is what a local ``torch.Generator`` cannot be here.
    """
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        if cuda:
            torch.manual_seed(seed)
        else:  # torch.manual_seed would queue a seed for CUDA's later start: the caller's stream, not ours
            torch.random.default_generator.manual_seed(seed)
        yield
