"""Tell which ecosystem a model source belongs to, before anything is loaded.

Sources: a built-in name (``vit-transfer/fashion-vit-tiny``), a local folder (HF ``save_pretrained``
or timm ``save_for_hf`` layout), a local weights file (timm checkpoint), a timm name
(``vit_base_patch16_224.augreg_in21k``, ``timm/...``, ``hf-hub:...``) or a Hugging Face hub id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownSourceError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class Source:
    ecosystem: str  # "hf" or "timm"
    kind: str  # "builtin", "dir", "file", "hub", "timm-name"
    location: str  # path, hub id, or timm model name as timm.create_model wants it
    original: str


def folder_ecosystem(path: Path) -> str:
    """``"timm"`` for timm's hub layout (``architecture`` key), ``"hf"`` for transformers', else a clear error."""
    config = path / "config.json"
    if not config.is_file():
        files = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise UnknownSourceError(
            f"{path} is a folder without config.json (it holds {files}); expected a folder saved by "
            "transformers' save_pretrained or timm's save_for_hf"
        )
    try:
        cfg = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnknownSourceError(f"{config} is not valid JSON: {exc}") from exc
    if "architecture" in cfg:
        return "timm"
    if "model_type" in cfg or "architectures" in cfg:
        return "hf"
    raise UnknownSourceError(
        f"{config} has neither 'architecture' (timm) nor 'model_type' (transformers): cannot tell its ecosystem"
    )


def resolve_source(source: str, ecosystem: str | None = None) -> Source:
    """Classify ``source``; raise ``UnknownSourceError`` with the reason when it cannot be."""
    from .builtin import builtin_path

    if ecosystem not in (None, "hf", "timm"):
        raise UnknownSourceError(f"ecosystem must be 'hf' or 'timm', got {ecosystem!r}")
    source = str(source)
    builtin = builtin_path(source)
    if builtin is not None:
        return Source("hf", "builtin", str(builtin), source)
    if source.startswith("local-dir:"):
        source = source[len("local-dir:"):]
        ecosystem = ecosystem or "timm"
    path = Path(source).expanduser()
    if path.is_dir():
        return Source(ecosystem or folder_ecosystem(path), "dir", str(path), source)
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise UnknownSourceError(f"{path} is a file but not a weights file ({', '.join(WEIGHT_SUFFIXES)})")
        return Source(ecosystem or "timm", "file", str(path), source)
    looks_like_path = source.startswith((".", "/", "~")) or path.suffix in WEIGHT_SUFFIXES
    if looks_like_path:
        raise UnknownSourceError(f"no such file or folder: {source}")
    if source.startswith("hf-hub:"):
        return Source("timm", "hub", source, source)
    if source.startswith("timm/") or ecosystem == "timm":
        name = source if source.startswith("hf-hub:") else (f"hf-hub:{source}" if "/" in source else source)
        return Source("timm", "hub" if "/" in source else "timm-name", name, source)
    if "/" not in source:
        import timm

        if timm.is_model(source.split(".")[0]):
            return Source("timm", "timm-name", source, source)
        raise UnknownSourceError(
            f"unknown model source {source!r}: not a local path, not a timm model name, and not a Hub id "
            "(owner/name). Examples: google/vit-base-patch16-224-in21k, timm/vit_base_patch16_224.augreg_in21k, "
            "./my-checkpoint, vit-transfer/fashion-vit-tiny"
        )
    if source.count("/") == 1 and all(source.split("/")):
        return Source(ecosystem or "hf", "hub", source, source)
    raise UnknownSourceError(f"unknown model source {source!r}")
