"""Tiny random checkpoints and datasets, written locally: for tests, examples and benchmarks offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def tiny_hf_vit(
    model_type: str = "vit",
    image_size: "int | list[int]" = 32,
    patch_size: int = 8,
    num_labels: int = 3,
    seed: int = 0,
    **config_overrides,
):
    """A random transformers ``*ForImageClassification`` with 2 blocks of width 32."""
    from transformers import (
        DeiTConfig,
        DeiTForImageClassification,
        Dinov2Config,
        Dinov2ForImageClassification,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    classes = {
        "vit": (ViTConfig, ViTForImageClassification),
        "deit": (DeiTConfig, DeiTForImageClassification),
        "dinov2": (Dinov2Config, Dinov2ForImageClassification),
        "dinov2_with_registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersForImageClassification),
    }
    config_cls, model_cls = classes[model_type]
    kwargs = dict(TINY, image_size=image_size, patch_size=patch_size, num_labels=num_labels)
    kwargs.update(config_overrides)
    config = config_cls(**kwargs)
    config.architectures = [model_cls.__name__]
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():  # random (not zero) position tables make resize tests meaningful
        getattr(model, model.base_model_prefix).embeddings.position_embeddings.normal_(0, 0.5)
    return model


def save_tiny_hf_vit(folder: "str | Path", **kwargs) -> Path:
    folder = Path(folder)
    tiny_hf_vit(**kwargs).save_pretrained(folder)
    return folder


def tiny_timm_vit(
    image_size: "int | tuple[int, int]" = 32,
    patch_size: int = 8,
    num_classes: int = 3,
    seed: int = 0,
    architecture: str = "vit_tiny_patch16_224",
    **model_args,
):
    """A random timm VisionTransformer with 2 blocks of width 32 (``reg_tokens=4`` etc. pass through)."""
    import timm

    args = dict(img_size=image_size, patch_size=patch_size, embed_dim=32, depth=2, num_heads=2, num_classes=num_classes)
    args.update(model_args)
    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, **args).eval()
    with torch.no_grad():
        model.pos_embed.normal_(0, 0.5)
    return model


def save_tiny_timm_vit(folder: "str | Path", **kwargs) -> Path:
    from timm.models import save_for_hf

    folder = Path(folder)
    save_for_hf(tiny_timm_vit(**kwargs), folder, safe_serialization=True)
    return folder


def write_image_folder(
    root: "str | Path",
    num_classes: int = 3,
    per_class: int = 8,
    size: int = 32,
    seed: int = 0,
    mode: str = "RGB",
) -> Path:
    """An ``imagefolder`` dataset (``root/train/<class>/*.png``) whose classes differ in colour: learnable."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, n in (("train", per_class), ("test", max(2, per_class // 2))):
        for c in range(num_classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.zeros((size, size, 3), dtype=np.float32)
                base[..., c % 3] = 200
                img = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).convert(mode).save(d / f"{i}.png")
    return root
