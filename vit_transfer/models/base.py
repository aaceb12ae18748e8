"""``TransferModel``: the one interface over a transformers or timm Vision Transformer.

It wraps the native model (``.model``, untouched classes, so stock loaders and peft keep working)
and answers the questions transfer learning asks of it: what size and grid, which tokens are
prefix tokens, where the head is, how to resize, how to save. Ecosystem details live in
``hf_vit.py`` and ``timm_vit.py``.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from timm.layers import to_2tuple
from torch import nn

from ..caller_state import seeded_torch_rng
from ..errors import ImageSizeError
from ..layers import Interpolation, pool_tokens, pooled_dim
from ..layers.pixels import normalize_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


def check_attention(implementation: str) -> str:
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, got {implementation!r}")
    return implementation


def to_pair(value: "int | tuple[int, int] | list[int]") -> tuple[int, int]:
    """``(height, width)`` from one size or two (config files hold either): timm's ``to_2tuple`` plus what it
    leaves out, exactly two whole numbers or an error naming the value."""
    try:
        pair = to_2tuple(value)
        if len(pair) != 2:
            raise ValueError(f"{len(pair)} values")
        return int(pair[0]), int(pair[1])
    except (TypeError, ValueError) as exc:
        raise ImageSizeError(f"expected one size or (height, width), got {value!r}") from exc


@dataclass(frozen=True)
class Preprocessing:
    """What an input image must look like for this model: size and normalisation."""

    image_size: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeadSpec:
    """The classifier on top of the backbone; stored in saved configs so reloads rebuild it."""

    num_labels: int
    kind: str = "linear"
    pooling: str = "cls"
    hidden_dim: int | None = None
    dropout: float = 0.0
    last_n: int = 1  # the head reads the pooled features of the last N blocks (a multi-block probe; not stock)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ResizeReport:
    """What ``TransferModel.resize`` changed, for the CLI and logs."""

    old_image_size: tuple[int, int]
    new_image_size: tuple[int, int]
    old_patch_size: tuple[int, int]
    new_patch_size: tuple[int, int]
    old_grid: tuple[int, int]
    new_grid: tuple[int, int]
    num_prefix_tokens: int
    interpolation: dict = field(default_factory=dict)
    num_parameters: int = 0

    def summary(self) -> str:
        return (
            f"image {self.old_image_size[0]}x{self.old_image_size[1]} -> {self.new_image_size[0]}x{self.new_image_size[1]}, "
            f"patch {self.old_patch_size[0]}x{self.old_patch_size[1]} -> {self.new_patch_size[0]}x{self.new_patch_size[1]}, "
            f"grid {self.old_grid[0]}x{self.old_grid[1]} -> {self.new_grid[0]}x{self.new_grid[1]} "
            f"(+{self.num_prefix_tokens} prefix token(s) kept), {self.num_parameters:,} parameters"
        )


def check_divisible(image_size: tuple[int, int], patch_size: tuple[int, int]) -> tuple[int, int]:
    """Return the patch grid, or raise a clear error when the patch size does not divide the image."""
    h, w = image_size
    ph, pw = patch_size
    if h <= 0 or w <= 0:
        raise ImageSizeError(f"image size must be positive, got {h}x{w}")
    if h % ph or w % pw:
        def near(x: int, p: int) -> str:
            lo = max(p, x // p * p)
            return f"{lo} or {lo + p}" if lo != x else str(x)

        raise ImageSizeError(
            f"image size {h}x{w} is not a multiple of the patch size {ph}x{pw}; "
            f"use height {near(h, ph)} and width {near(w, pw)}, or change the patch size"
        )
    return h // ph, w // pw


class TransferModel(nn.Module, abc.ABC):
    """A pretrained ViT prepared for transfer. ``forward(pixel_values)`` returns logits.

    ``pixel_values`` is either normalised float input or raw ``uint8`` pixels, which the model prepares itself
    (``prepare_pixels``), so loaders can ship bytes and leave the arithmetic to the device.
    """

    ecosystem: str = ""
    num_prompt_tokens: int = 0  # VPT prompts in the sequence after the prefix tokens (adapters/vpt.py)

    def __init__(self, model: nn.Module, source: str = ""):
        super().__init__()
        self.model = model
        self.source = source
        self.original_image_size = self.image_size  # the checkpoint's own size, kept through resize (run_info.json)

    # --- geometry -------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]: ...

    @property
    @abc.abstractmethod
    def patch_size(self) -> tuple[int, int]: ...

    @property
    def grid_size(self) -> tuple[int, int]:
        return check_divisible(self.image_size, self.patch_size)

    @property
    @abc.abstractmethod
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens in the sequence (class, distillation, registers)."""

    @property
    @abc.abstractmethod
    def num_pos_prefix_tokens(self) -> int:
        """Prefix rows in the position table (registers and ``no_embed_class`` tokens have none)."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def pos_embed(self) -> nn.Parameter | None:
        """The absolute position table ``(1, prefix + P, D)``; ``None`` for a model that has none (relative
        position bias in its blocks, ``model.scratch.pos_embed: relative``)."""

    @property
    @abc.abstractmethod
    def patch_kernel(self) -> nn.Conv2d: ...

    @property
    @abc.abstractmethod
    def preprocessing(self) -> Preprocessing: ...

    # --- labels and head ------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def head_spec(self) -> HeadSpec: ...

    @property
    def num_labels(self) -> int:
        return self.head_spec.num_labels

    @property
    @abc.abstractmethod
    def id2label(self) -> dict[int, str]: ...

    @abc.abstractmethod
    def head_module_names(self) -> list[str]:
        """Names (relative to ``.model``) of the modules that form the new head: peft ``modules_to_save``."""

    @abc.abstractmethod
    def default_lora_targets(self) -> list[str]:
        """Leaf module names LoRA adapts by default: the query/value projections (HF 4.x ``query``/``value``,
        5.x ``q_proj``/``v_proj``, resolved from the loaded model) or timm's fused ``qkv`` and ``proj``."""

    @abc.abstractmethod
    def set_head(
        self,
        num_labels: int,
        id2label: dict[int, str] | None = None,
        kind: str = "linear",
        pooling: str | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        init: str = "zeros",
        last_n: int = 1,
    ) -> None:
        """Replace the classifier for a new label set; ``last_n > 1`` reads ``forward_features(pooling, last_n)``."""

    def head_parameters(self) -> list[nn.Parameter]:
        params = []
        for name in self.head_module_names():
            params += list(self.model.get_submodule(name).parameters())
        return params

    # --- forward --------------------------------------------------------------------------
    def prepare_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """A ``uint8`` batch (what the library's loaders yield) becomes this model's input: scaled, resized to its
        size if needed and normalised, on the batch's device. A float batch is taken as prepared already."""
        if pixel_values.dtype != torch.uint8:
            return pixel_values
        pre = self.preprocessing
        return normalize_uint8(pixel_values, pre.mean, pre.std, tuple(pre.image_size), pre.interpolation)

    @abc.abstractmethod
    def forward_tokens(self, pixel_values: torch.Tensor, last_n: int = 1) -> list[torch.Tensor]:
        """Final-normed ``(B, N, D)`` token sequences of the last ``last_n`` blocks, oldest first."""

    def pool(self, tokens: torch.Tensor, pooling: str) -> torch.Tensor:
        """``(B, N, D)`` tokens to the vector a head with this pooling reads (one place for probe and head)."""
        return pool_tokens(tokens, pooling, self.num_prefix_tokens)

    def forward_features(self, pixel_values: torch.Tensor, pooling: str = "cls", last_n: int = 1) -> torch.Tensor:
        """Pooled features ``(B, F)`` for probing: ``F = last_n * D`` (``2x`` for ``cls+mean``)."""
        return torch.cat([self.pool(t, pooling) for t in self.forward_tokens(pixel_values, last_n=last_n)], dim=-1)

    def feature_dim(self, pooling: str = "cls", last_n: int = 1) -> int:
        return last_n * pooled_dim(self.embed_dim, pooling)

    @abc.abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def set_attention(self, implementation: str) -> None:
        """Pick the attention kernel: ``"sdpa"`` (fused) or ``"eager"`` (plain matmuls).

        Same weights, same numbers up to rounding; only speed differs. On CPU under bf16 autocast,
        eager measured 1.3-1.9x faster for these short sequences (see docs/training.md).
        """

    @property
    def depth(self) -> int:
        """Number of transformer blocks (``token_sites``' list: one count for both ecosystems)."""
        return len(self.token_sites()[1])

    @abc.abstractmethod
    def token_sites(self) -> "tuple[nn.Module, list[nn.Module]]":
        """The module whose output is the token sequence entering block 0 (position embeddings added), and the
        blocks, oldest first: where prompt tokens go in (VPT)."""

    @abc.abstractmethod
    def attention_sites(self) -> "list[tuple[nn.Module, Callable[[object], torch.Tensor]]]":
        """Per block, oldest first: the module whose forward output carries the ``(B, heads, N, N)`` attention
        probabilities under eager attention, and how to read them from that output (diagnostics hook these)."""

    @abc.abstractmethod
    def _drop_path_sites(self) -> list[list[tuple[nn.Module, str]]]:
        """Per block, oldest first, the ``(module, attribute)`` pairs that hold its stochastic-depth layers."""

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth for training (DeiT / BEiT fine-tuning): the last block drops its residual branch
        with probability ``rate``, earlier ones linearly less (timm's rule, for both ecosystems). Eval is
        unaffected; not saved with the model."""
        from timm.layers import DropPath, calculate_drop_path_rates

        from ..errors import ConfigError

        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {rate}")
        blocks = self._drop_path_sites()
        if not blocks and rate > 0:
            raise ConfigError(f"model.drop_path_rate: {type(self.model).__name__} has no stochastic-depth layers "
                              "(transformers' Dinov2 and every timm ViT do; `vit-transfer convert --to timm` gives one)")
        for block_rate, sites in zip(calculate_drop_path_rates(rate, len(blocks)), blocks):
            for module, name in sites:
                setattr(module, name, DropPath(block_rate) if block_rate > 0 else nn.Identity())

    @abc.abstractmethod
    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them (less memory,
        about a third more compute). Non-reentrant, so it works with a frozen backbone and with LoRA."""

    @abc.abstractmethod
    def _init_backbone(self) -> None:
        """Give every backbone weight the architecture's random initialisation."""

    def reinitialize(self, seed: int = 0, head_init: str = "zeros") -> None:
        """Random weights of the same architecture (the from-scratch control). The head is rebuilt from its
        spec, so only its last layer starts at zero, as a new head does: a zero MLP would never train.
        The weights depend on ``seed`` alone; the caller's random stream is left where it was."""
        spec = self.head_spec
        with seeded_torch_rng(seed):
            self._init_backbone()
            self.set_head(spec.num_labels, self.id2label, spec.kind, spec.pooling, spec.hidden_dim, spec.dropout,
                          head_init, last_n=spec.last_n)

    # --- resize ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _apply_geometry(self, image_size: tuple[int, int], patch_size: tuple[int, int]) -> None:
        """Update the native model (config, attributes, patch kernel) to a new size; ``resize`` sets the table."""

    def resize(
        self,
        image_size: "int | tuple[int, int]",
        patch_size: "int | tuple[int, int] | None" = None,
        interpolation: "str | Interpolation" = "bicubic",
        align_corners: bool | None = None,
        antialias: bool | None = None,
    ) -> ResizeReport:
        """Resize position embeddings (and optionally the patch kernel) for a new input size.

        The change is written into the native config, so ``save`` produces a checkpoint that the
        stock loader rebuilds at the new size with no extra flag.
        """
        from ..layers import resample_pos_embed

        if self.pos_embed is None:
            raise ImageSizeError(f"{type(self.model).__name__} has no absolute position table (a relative position "
                                 "bias in each block, sized for its grid): resizing it is not supported")
        new_image = to_pair(image_size)
        new_patch = to_pair(patch_size) if patch_size is not None else self.patch_size
        new_grid = check_divisible(new_image, new_patch)
        interp = Interpolation.parse(interpolation, align_corners=align_corners, antialias=antialias)
        report = ResizeReport(
            old_image_size=self.image_size,
            new_image_size=new_image,
            old_patch_size=self.patch_size,
            new_patch_size=new_patch,
            old_grid=self.grid_size,
            new_grid=new_grid,
            num_prefix_tokens=self.num_pos_prefix_tokens,
            interpolation=dict(mode=interp.mode, align_corners=interp.align_corners, antialias=interp.antialias),
        )
        with torch.no_grad():
            prefix = self.num_pos_prefix_tokens
            table = resample_pos_embed(self.pos_embed.data, new_grid, report.old_grid, prefix, interp)
            self._apply_geometry(new_image, new_patch)
            self.pos_embed.data = table.contiguous()  # last: timm's set_input_size resamples with its own defaults
        report.num_parameters = sum(p.numel() for p in self.parameters())
        return report

    # --- save -----------------------------------------------------------------------------
    @abc.abstractmethod
    def save(self, output_dir: "str | Path") -> Path:
        """Write the model in its ecosystem's stock layout (weights, config with size and labels)."""

    def extra_repr(self) -> str:
        return (
            f"ecosystem={self.ecosystem}, image_size={self.image_size}, patch_size={self.patch_size}, "
            f"prefix_tokens={self.num_prefix_tokens}, num_labels={self.num_labels}"
        )
