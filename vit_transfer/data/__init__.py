"""Datasets, transforms and loaders (see docs/data.md).

``load_image_datasets(DataConfig)`` reads any supported source into train/eval/test splits of
``(PIL.Image | None, label)``; ``build_transform`` follows a model's ``Preprocessing``;
``make_dataloader`` batches them, dropping and counting images that cannot be decoded.
"""

from .base import ArrayImageDataset, FileImageDataset, ImageDataset, ImageSubset
from .builtin import FASHION_MNIST_CLASSES, load_digits_splits, load_fashion_mnist, load_idx_folder
from .config import AugmentConfig, DataConfig
from .datasets import ImageDatasets, load_image_datasets
from .idx import read_idx
from .images import decode_image, to_rgb
from .loader import EpochShuffle, SkipUndecodable, UndecodableImageWarning, make_dataloader
from .sources import detect_format
from .splits import stratified_split, stratified_subset
from .transforms import ImageTransform, build_transform, mixup_cutmix

__all__ = [
    "FASHION_MNIST_CLASSES",
    "ArrayImageDataset",
    "AugmentConfig",
    "DataConfig",
    "EpochShuffle",
    "FileImageDataset",
    "ImageDataset",
    "ImageDatasets",
    "ImageSubset",
    "ImageTransform",
    "SkipUndecodable",
    "UndecodableImageWarning",
    "build_transform",
    "decode_image",
    "detect_format",
    "load_digits_splits",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_image_datasets",
    "make_dataloader",
    "mixup_cutmix",
    "read_idx",
    "stratified_split",
    "stratified_subset",
    "to_rgb",
]
