"""One place that builds the ``Accelerator`` (precision, device, trackers) for every training entry point."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..precision import resolve_precision  # the one precision rule (vit_transfer/precision.py)

TRACKER_DIR = "logs"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def _launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextmanager
def scoped_accelerator(precision: str = "no", cpu: bool = False) -> Iterator:
    """An ``Accelerator`` for one library call (``predict``, ``evaluate``) given none; afterwards Accelerate's
    global state is the caller's again (``caller_state.accelerate_state``)."""
    from ..caller_state import accelerate_state

    with accelerate_state():
        yield make_accelerator(precision, cpu)


def make_accelerator(precision: str = "no", cpu: bool = False, log_with: str = "none",
                     project_dir: "str | Path | None" = None, grad_accum_steps: int = 1):
    """An ``Accelerator`` for one training run.

    In a single process the global Accelerate state is reset first, so several runs with different
    precisions can follow each other in one Python session (tests, the quickstart, notebooks).
    Under ``accelerate launch`` with several processes the state is left alone.
    The scheduler is stepped by the loop itself once per optimiser step (not once per process).
    Accumulation counts micro-batches across epoch ends (``sync_with_dataloader=False``), so every
    optimiser step averages exactly ``grad_accum_steps`` of them. Host-to-device copies are non-blocking.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin
    from accelerate.state import AcceleratorState

    if not _launched_distributed() and AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=True)
    trackers = "tensorboard" if log_with == "tensorboard" and project_dir else None
    if trackers and not tensorboard_available():
        import warnings

        warnings.warn("output.log_with=tensorboard, but neither tensorboard nor tensorboardX is installed: this run "
                      "writes no logs/ (metrics.json still holds the results); pip install tensorboard, or set "
                      "output.log_with=none to silence this", stacklevel=2)
        trackers = None
    return Accelerator(
        mixed_precision=resolve_precision(precision, cpu),
        cpu=cpu,
        log_with=trackers,
        project_dir=str(project_dir) if project_dir is not None else None,
        step_scheduler_with_optimizer=False,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=grad_accum_steps, sync_with_dataloader=False),
        # batches from pinned memory (make_dataloader pins on CUDA) are copied while the previous step runs
        dataloader_config=DataLoaderConfiguration(non_blocking=True),
    )
