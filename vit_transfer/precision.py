"""``precision: auto``, one rule for every entry point: bf16 where the hardware runs it natively, else fp32.

Training (``train.precision``, Accelerate's names ``no``/``bf16``/``fp16``) and the probe
(``probe.precision``, ``fp32``/``bf16``/``fp16``) both resolve ``auto`` here, so LP-FT probes in the
precision its fine-tune trains in, and a probe run and a training run on one machine agree.
"""

from __future__ import annotations

import warnings

import torch

TRAIN_TO_PROBE = {"no": "fp32", "bf16": "bf16", "fp16": "fp16", "auto": "auto"}


def native_bf16(cpu: bool = False) -> bool:
    """Whether bf16 runs in hardware here: a CUDA GPU that supports it, or a CPU with bf16 units.

    CPUs without them (many laptops) emulate bf16 and run slower than fp32, hence the check.
    """
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
        if cpu or not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            warnings.warn("train.precision=bf16 on a CPU without bf16 units (AVX512-BF16/AMX): bf16 is emulated "
                          "and runs many times slower than fp32; use train.precision=auto (fp32 here) unless you "
                          "need bf16 numerics", stacklevel=2)
    return precision


def probe_precision(train_precision: str) -> str:
    """``train.precision`` in the probe's names (``no`` -> ``fp32``); ``auto`` stays ``auto``, resolved by the same rule."""
    return TRAIN_TO_PROBE[train_precision]


def autocast_dtype_for(precision: str, device: torch.device) -> "torch.dtype | None":
    """The probe's autocast dtype: ``auto`` is bf16 where ``native_bf16`` holds for ``device``, else fp32 (None)."""
    if precision == "auto":
        return torch.bfloat16 if native_bf16(cpu=device.type == "cpu") else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
