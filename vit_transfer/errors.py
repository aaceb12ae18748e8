"""Errors vit-transfer raises on bad input, each naming what was wrong and how to fix it."""


class VitTransferError(Exception):
    """Base class: catch this to handle any user-facing vit-transfer error."""


class UnknownSourceError(VitTransferError, ValueError):
    """A model source is neither a local path, a Hub id, nor a timm model name."""


class NotAViTError(VitTransferError, ValueError):
    """The checkpoint loads, but it is not a Vision Transformer vit-transfer can adapt."""


class CheckpointError(VitTransferError, OSError):
    """A weights file is missing, truncated or corrupt."""


class ImageSizeError(VitTransferError, ValueError):
    """An image size that the patch size does not divide, or is otherwise unusable."""


class ConfigError(VitTransferError, ValueError):
    """A recipe or command-line override names an unknown key or has a wrong type."""


class DataError(VitTransferError, ValueError):
    """A dataset cannot be read: missing path, unknown column, no images."""


class HubError(VitTransferError):
    """Base class for push failures (network, server refusals, an unusable output folder)."""


class NoTrainedModelError(HubError, FileNotFoundError):
    """A run folder holds no trained model or adapter (or lacks a piece of one): reading it (``runs.folder``) and
    pushing it both raise this."""
