"""Image transforms that follow the model's ``Preprocessing``, and batch-level MixUp/CutMix.

Train: RandomResizedCrop (or a resize plus pad-and-crop translation, or a plain resize) to the
model's size, horizontal flip, optional RandAugment. Eval: square sizes resize the short side to
``size / crop_pct`` and centre-crop (timm's protocol); non-square sizes resize straight to
``(h, w)``. Both end in a float tensor normalised with the model's mean and std, or (``normalize=False``,
what the training loaders use) in the ``uint8`` tensor the model normalises on the device itself
(``TransferModel.prepare_pixels``), optionally at a smaller ``size`` the device resizes from. Every image is
converted to RGB first.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from ..errors import ConfigError
from ..models.base import to_pair
from .config import AugmentConfig
from .images import to_rgb

INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
    "box": InterpolationMode.BOX,
    "hamming": InterpolationMode.HAMMING,
    "random": InterpolationMode.BICUBIC,  # timm's "random" picks per image; bicubic is its common choice
}


def interpolation_mode(name: str) -> InterpolationMode:
    if str(name).lower() not in INTERPOLATIONS:
        known = ", ".join(INTERPOLATIONS)
        raise ConfigError(f"unknown image interpolation {name!r} (model.preprocessing.interpolation); use one of {known}")
    return INTERPOLATIONS[str(name).lower()]


class ImageTransform:
    """A picklable ``PIL.Image -> Tensor (3, H, W)``; ``image_size`` and ``dtype`` tell what comes out."""

    def __init__(self, pipeline: Callable, image_size: tuple[int, int], dtype: torch.dtype = torch.float32):
        self.pipeline = pipeline
        self.image_size = image_size
        self.dtype = dtype

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.pipeline(to_rgb(image))

    def __repr__(self) -> str:
        return f"ImageTransform(image_size={self.image_size}, pipeline={self.pipeline})"


def build_transform(preprocessing, train: bool, augment: "AugmentConfig | None" = None, *,
                    normalize: bool = True, size: "int | tuple[int, int] | None" = None) -> ImageTransform:
    """The train or eval transform for a model's ``Preprocessing`` (at its current image size).

    ``normalize=False`` stops at ``uint8`` (a quarter of the bytes to move; the model normalises).
    ``size`` makes the crops at another size than the model's (``data.host_image_size``): with uint8
    output the model resizes each batch on its device.
    """
    if size is not None and normalize:
        raise ConfigError("a transform at another size than the model's must leave normalisation to the model "
                          "(normalize=False): float output would reach the model at the wrong size")
    size = to_pair(size if size is not None else preprocessing.image_size)
    interpolation = interpolation_mode(preprocessing.interpolation)
    steps: list = []
    if train:
        augment = augment or AugmentConfig()
        if augment.crop == "random_resized_crop":
            steps.append(v2.RandomResizedCrop(size, scale=tuple(augment.crop_scale), interpolation=interpolation, antialias=True))
        elif augment.crop == "random_crop":
            # Translation without rescaling: small images (digits, Fashion-MNIST) keep their scale,
            # which random-resized crops change (measured worse there).
            steps.append(v2.Resize(size, interpolation=interpolation, antialias=True))
            steps.append(v2.RandomCrop(size, padding=_padding(augment.crop_padding), fill=0))
        elif augment.crop == "resize":
            steps.append(v2.Resize(size, interpolation=interpolation, antialias=True))
        else:
            raise ConfigError(
                f"augment.crop must be 'random_resized_crop', 'random_crop' or 'resize', got {augment.crop!r}"
            )
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if augment.randaugment:
            steps.append(v2.RandAugment(interpolation=interpolation))
    elif size[0] == size[1]:
        crop_pct = float(preprocessing.crop_pct or 1.0)
        steps.append(v2.Resize(math.floor(size[0] / crop_pct), interpolation=interpolation, antialias=True))
        steps.append(v2.CenterCrop(size))
    else:
        steps.append(v2.Resize(size, interpolation=interpolation, antialias=True))
    steps.append(v2.PILToTensor())
    if not normalize:
        return ImageTransform(v2.Compose(steps), size, torch.uint8)
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std))]
    return ImageTransform(v2.Compose(steps), size)


def mixup_cutmix(batch: dict, num_labels: int, augment: "AugmentConfig | None") -> dict:
    """The batch with MixUp and/or CutMix applied and soft ``labels`` ``(B, num_labels)``.

    With both alphas > 0 each batch gets one of the two at random. With both 0 (or no
    ``augment``) the batch comes back unchanged, with hard labels. Label smoothing is left to the
    loss: ``CrossEntropyLoss(label_smoothing=...)`` accepts soft targets.
    """
    if augment is None or (augment.mixup_alpha <= 0 and augment.cutmix_alpha <= 0):
        return batch
    pixel_values, labels = batch["pixel_values"], batch["labels"]
    out = dict(batch)
    if labels.ndim != 1:
        return batch  # already soft
    if labels.numel() == 0:
        out["labels"] = torch.zeros(0, num_labels, dtype=pixel_values.dtype, device=labels.device)
        return out
    mixers = []
    if augment.mixup_alpha > 0:
        mixers.append(v2.MixUp(alpha=augment.mixup_alpha, num_classes=num_labels))
    if augment.cutmix_alpha > 0:
        mixers.append(v2.CutMix(alpha=augment.cutmix_alpha, num_classes=num_labels))
    mixer = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
    out["pixel_values"], out["labels"] = mixer(pixel_values, labels.long())
    return out


def _padding(padding) -> int:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"augment.crop_padding must be a whole number of pixels >= 0, got {padding!r}")
    return padding

