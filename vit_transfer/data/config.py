"""The recipe sections that describe data: ``data:`` (where images come from) and ``augment:``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Format = Literal["auto", "hub", "imagefolder", "csv", "parquet", "idx", "digits"]


@dataclass
class DataConfig:
    """Where the images and labels come from, and how the splits are formed.

    ``source`` is a Hub dataset id, an image-folder path, a ``.csv``/``.parquet`` file, a folder of
    idx files, ``"sklearn:digits"`` or ``"fashion-mnist"``; ``format="auto"`` tells them apart.
    ``eval_split``/``test_split`` left at ``None`` pick the source's own validation/test split when
    it has one (``"none"`` turns a split off); without a validation split, ``val_fraction`` of the
    train split is carved out (seeded by ``split_seed``, stratified by label).
    """

    source: str = "sklearn:digits"
    format: Format = "auto"
    image_column: str = "image"
    label_column: str = "label"
    train_split: str = "train"
    eval_split: str | None = None
    test_split: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_test_samples: int | None = None
    num_workers: int = 2
    balance: bool = False  # training draws every class equally often (with replacement), seeded per epoch
    hub_config: str | None = None  # the Hub dataset's configuration name (``load_dataset(id, name)``)
    # workers crop to this size and the device resizes each batch to the model's (CIFAR at 384 px: 32)
    host_image_size: int | tuple[int, int] | None = None
    # decode every image of a split once into memory when the decoded split fits in this many MiB (0: off)
    decode_cache_mib: int = 2048

    def __post_init__(self) -> None:  # checked where the recipe is read
        from ..errors import ConfigError
        from ..models.base import to_pair

        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"data.source must be a dataset id, a path or a built-in name, got {self.source!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"data.{key} must be a positive number of images or null, got {value}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be 0 (load in the main process) or more, got {self.num_workers}")
        if self.host_image_size is not None:
            try:
                size = to_pair(self.host_image_size)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"data.host_image_size must be a size in pixels or [height, width], "
                                  f"got {self.host_image_size!r}") from exc
            if min(size) <= 0:
                raise ConfigError(f"data.host_image_size must be positive, got {self.host_image_size!r}")
            self.host_image_size = size
        if self.decode_cache_mib < 0:
            raise ConfigError(f"data.decode_cache_mib must be a number of MiB >= 0 (0 turns the cache off), "
                              f"got {self.decode_cache_mib}")


@dataclass
class AugmentConfig:
    """Train-time augmentation; evaluation always resizes and centre-crops."""

    crop: Literal["random_resized_crop", "random_crop", "resize"] = "random_resized_crop"
    crop_scale: tuple[float, float] = (0.08, 1.0)  # random_resized_crop only
    crop_padding: int = 4  # random_crop only: pad each side with black, then crop back (shifts of up to this many px)
    hflip: bool = True
    randaugment: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0  # applied by the loss (F.cross_entropy takes soft targets too)

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"augment.label_smoothing must be in [0, 1), got {self.label_smoothing}")
