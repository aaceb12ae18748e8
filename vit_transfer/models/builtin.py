"""Checkpoints shipped inside the package: an offline default that never touches the network."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import CheckpointError

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# name -> (folder under vit_transfer/assets, sha256 of its model.safetensors)
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "vit-transfer/fashion-vit-tiny": ("fashion-vit-tiny", "ce5b8d073db51e3af8576710defcac7905f360673812d87bbfd1152e52379cec"),
}
ALIASES = {"builtin:fashion-vit-tiny": "vit-transfer/fashion-vit-tiny", "fashion-vit-tiny": "vit-transfer/fashion-vit-tiny"}


def builtin_path(name: str) -> Path | None:
    """The folder of a built-in checkpoint, checksum-verified, or None if ``name`` is not built in."""
    name = ALIASES.get(name, name)
    if name not in BUILTIN_MODELS:
        return None
    folder, expected = BUILTIN_MODELS[name]
    path = ASSETS / folder
    verify_checksum(path / "model.safetensors", expected)
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"built-in checkpoint file is missing: {path}; reinstall vit-transfer")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"built-in checkpoint {path} is corrupt: sha256 {actual[:16]}... != expected {expected[:16]}...; "
            "reinstall vit-transfer"
        )
