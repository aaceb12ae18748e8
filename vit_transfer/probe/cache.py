"""On-disk feature cache: embed a dataset once, probe it many times.

A cache entry is one safetensors file named by a hash of everything that changes the features:
the backbone weights and architecture, the input resolution and preprocessing, the transform, the
pooling, the number of blocks, the precision, and the dataset split's fingerprint. Any change gives a
new key, so stale features are never reused. Writes go to a temporary file that is renamed into place,
so a killed run never leaves a truncated entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .features import Features

CACHE_FORMAT = 1
# module attributes that change a forward pass without changing any weight
_ARCH_ATTRIBUTES = ("num_heads", "num_attention_heads", "attention_head_size", "head_dim", "scale", "eps",
                    "num_prefix_tokens", "no_embed_class", "num_reg_tokens", "dynamic_img_size")
# HF config keys about labels or provenance, not about the backbone's computation
_HF_CONFIG_IGNORED = {"id2label", "label2id", "num_labels", "vit_transfer_head", "_name_or_path", "architectures",
                      "transformers_version", "problem_type", "torch_dtype", "dtype", "return_dict",
                      "output_hidden_states", "output_attentions", "_attn_implementation", "_commit_hash"}


def default_cache_dir() -> Path:
    """``$HF_HOME/vit_transfer/features`` when HF_HOME is set, else ``~/.cache/vit_transfer/features``."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "vit_transfer" / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit_transfer" / "features"


def model_digest(model) -> str:
    """Hash of the backbone: every weight and buffer byte plus the architecture (head excluded).

    The head is left out because probing never reads it, so the same backbone loaded with a
    different classifier shares its cached features.
    """
    head_names = tuple(model.head_module_names())
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_architecture(model, head_names).encode())
    for name, tensor in sorted(model.model.state_dict().items()):
        if name.startswith(tuple(f"{h}." for h in head_names)):
            continue
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _architecture(model, head_names: tuple[str, ...]) -> str:
    parts = [type(model.model).__name__, model.ecosystem, str(model.image_size), str(model.patch_size)]
    for name, module in model.model.named_modules():
        if name in head_names or name.startswith(tuple(f"{h}." for h in head_names)):
            continue
        attrs = {a: getattr(module, a) for a in _ARCH_ATTRIBUTES if isinstance(getattr(module, a, None), (int, float, bool))}
        parts.append(f"{name}:{type(module).__name__}({module.extra_repr()}){attrs or ''}")
    config = getattr(model.model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        settings = {k: v for k, v in config.to_dict().items()
                    if k not in _HF_CONFIG_IGNORED and isinstance(v, (int, float, str, bool, list, type(None)))}
        parts.append(json.dumps(settings, sort_keys=True, default=str))
    return "\n".join(parts)


def describe_transform(transform: Callable | None) -> str:
    """A stable text for a transform (torchvision ``Compose`` reprs list every step and size)."""
    if transform is None:
        return "model-eval-transform"
    text = repr(transform)
    if " at 0x" in text:  # a bare function or object: its identity, never its memory address
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
    return text


def feature_key_parts(
    model_hash: str,
    *,
    preprocessing: dict,
    transform: str,
    pooling: str,
    last_n: int,
    precision: str,
    dataset_fingerprint: str,
) -> dict[str, Any]:
    """Everything the cached features depend on, as plain data (stored beside them, hashed into the key)."""
    return {
        "format": CACHE_FORMAT,
        "model": model_hash,
        "image_size": list(preprocessing.get("image_size", [])),
        "preprocessing": preprocessing,
        "transform": transform,
        "pooling": pooling,
        "last_n": int(last_n),
        "precision": precision,
        "dataset": dataset_fingerprint,
    }


def key_of(parts: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=20).hexdigest()


@dataclass
class CacheLookup:
    features: Features | None
    key: str
    hit: bool


class FeatureCache:
    """A folder of ``<key>.safetensors`` feature files; ``hits`` and ``misses`` count lookups."""

    def __init__(self, directory: "str | Path | None" = None):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def load(self, parts: dict[str, Any]) -> CacheLookup:
        """The cached features for ``parts``, or a miss (absent, unreadable or written for other parts)."""
        key = key_of(parts)
        path = self.path(key)
        features = None
        if path.is_file():
            try:
                features = self._read(path, parts)
            except (SafetensorError, OSError, KeyError, ValueError):
                features = None  # a corrupt entry is a miss; the fresh result overwrites it
        if features is None:
            self.misses += 1
        else:
            self.hits += 1
        return CacheLookup(features, key, features is not None)

    def save(self, parts: dict[str, Any], features: Features) -> Path:
        """Write atomically: a temporary file in the same folder, then ``os.replace``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key_of(parts))
        tensors = {
            "features": features.features.contiguous(),
            "labels": features.labels.contiguous(),
            "indices": features.indices.contiguous(),
        }
        metadata = {"parts": json.dumps(parts, sort_keys=True, default=str), "num_skipped": str(features.num_skipped)}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @staticmethod
    def _read(path: Path, parts: dict[str, Any]) -> Features | None:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        if metadata.get("parts") != json.dumps(parts, sort_keys=True, default=str):
            return None  # a hash collision or a hand-copied file: never trust it
        tensors = load_file(str(path))
        return Features(tensors["features"], tensors["labels"], tensors["indices"], int(metadata.get("num_skipped", 0)))


def cached_features(
    model,
    dataset,
    dataset_fingerprint: str,
    cache: FeatureCache | None,
    transform: Callable | None = None,
    *,
    accelerator=None,
    model_hash: str | None = None,
    **options,
) -> tuple[Features, bool]:
    """``extract_features(model, dataset, transform, **options)`` through ``cache`` (None: no cache).

    Returns ``(features, hit)``. The key covers the options that shape features (pooling, last_n,
    precision). ``model_hash`` skips re-hashing the weights when several splits share one model.
    Under ``accelerate launch`` every process reads a hit; on a miss all extract their shard and the
    main process writes the entry.
    """
    from accelerate import Accelerator

    from . import features as features_module

    accelerator = accelerator or Accelerator()
    if transform is None:
        from ..data import build_transform

        transform = build_transform(model.preprocessing, train=False)
    parts = None
    if cache is not None:
        parts = feature_key_parts(
            model_hash or model_digest(model),
            preprocessing=model.preprocessing.to_dict(),
            transform=describe_transform(transform),
            pooling=options.get("pooling", "cls"),
            last_n=options.get("last_n", 1),
            precision=features_module.resolved_precision(options.get("precision", "auto"), accelerator.device),
            dataset_fingerprint=dataset_fingerprint,
        )
        lookup = cache.load(parts)
        if lookup.hit:
            return lookup.features, True
    feats = features_module.extract_features(model, dataset, transform, accelerator=accelerator, **options)
    if cache is not None:
        if accelerator.is_main_process:
            cache.save(parts, feats)
        accelerator.wait_for_everyone()
    return feats, False
