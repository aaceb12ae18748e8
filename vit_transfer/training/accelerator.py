"""One place that builds the ``Accelerator`` (precision, device, trackers) for every training entry point."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TRACKER_DIR = "logs"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def _launched_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def native_bf16(cpu: bool = False) -> bool:
    """Whether bf16 runs in hardware here: a CUDA GPU that supports it, or a CPU with bf16 units.

    CPUs without them (many laptops) emulate bf16 and run slower than fp32, hence the check.
    """
    import torch

    if not cpu and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if not cpu and torch.backends.mps.is_available():
        return False
    try:  # oneDNN's own check: AVX512-BF16 or AMX
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, cpu: bool = False) -> str:
    """``train.precision`` as Accelerate takes it: ``auto`` is bf16 where it runs natively, else ``no``.

    An explicit ``bf16`` on a CPU without bf16 units is kept (results stay comparable across
    machines) but warned about: there it is emulated, measured ~20x slower than fp32 for a small ViT.
    """
    if precision == "auto":
        return "bf16" if native_bf16(cpu) else "no"
    if precision == "bf16" and not native_bf16(cpu):
        import warnings

        import torch

        if cpu or not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            warnings.warn("train.precision=bf16 on a CPU without bf16 units (AVX512-BF16/AMX): bf16 is emulated "
                          "and runs many times slower than fp32; use train.precision=auto (fp32 here) unless you "
                          "need bf16 numerics", stacklevel=2)
    return precision


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
