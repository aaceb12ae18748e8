"""Read weight files defensively: a truncated or corrupt file gives a clear error naming it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from ..errors import CheckpointError


def validate_safetensors(path: "str | Path") -> None:
    """Check a safetensors file's header and that its size covers every tensor it declares."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("file is shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8:
                raise ValueError(f"header claims {header_len} bytes but the file has {size}")
            header = json.loads(fh.read(header_len))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}); re-download or re-save it") from exc
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    expected = 8 + header_len + end
    if size < expected:
        raise CheckpointError(
            f"{path} is truncated: its header needs {expected:,} bytes but the file has {size:,}; "
            "re-download or re-save it"
        )


def validate_folder(folder: "str | Path") -> None:
    for path in sorted(Path(folder).glob("*.safetensors")):
        validate_safetensors(path)


def load_state_dict_file(path: "str | Path") -> dict[str, torch.Tensor]:
    """Load a safetensors or PyTorch weights file (PyTorch files with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such weights file: {path}")
    if path.suffix == ".safetensors":
        validate_safetensors(path)
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({type(exc).__name__}: {exc}); "
            "it may be truncated, corrupt, or hold pickled objects beyond plain tensors"
        ) from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}
