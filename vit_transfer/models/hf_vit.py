"""``HFViT``: transformers ViT, DeiT, DINOv2, DINOv2-with-registers and class-token BEiT behind ``TransferModel``."""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ImageSizeError
from ..layers import build_head, resample_patch_embed
from .base import HeadSpec, Preprocessing, TransferModel, check_attention, to_pair

# The config key under which a non-native head is recorded, so load_vit can rebuild it.
HEAD_CONFIG_KEY = "vit_transfer_head"


@dataclass(frozen=True)
class HFFamily:
    """What differs between the transformers ViT families that matters for transfer."""

    pos_prefix_tokens: int  # rows before the grid in position_embeddings
    native_pooling: str  # what the stock *ForImageClassification head reads
    square_table_only: bool = False  # stock forward reshapes the table as a square
    default_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    default_std: tuple[float, ...] = (0.5, 0.5, 0.5)


IMAGENET = dict(default_mean=(0.485, 0.456, 0.406), default_std=(0.229, 0.224, 0.225))
FAMILIES: dict[str, HFFamily] = {
    "vit": HFFamily(pos_prefix_tokens=1, native_pooling="cls"),
    "deit": HFFamily(pos_prefix_tokens=2, native_pooling="cls", **IMAGENET),
    "dinov2": HFFamily(pos_prefix_tokens=1, native_pooling="cls+mean", square_table_only=True, **IMAGENET),
    "dinov2_with_registers": HFFamily(
        pos_prefix_tokens=1, native_pooling="cls+mean", square_table_only=True, **IMAGENET
    ),
    # BEiT read as a ViT: class-token pooling only (load_vit refuses use_mean_pooling); its relative position
    # bias lives in each block, and without use_absolute_position_embeddings there is no table (pos_embed None)
    "beit": HFFamily(pos_prefix_tokens=1, native_pooling="cls"),
}

PIL_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def read_hf_preprocessing(path: Path | None, family: HFFamily, image_size: tuple[int, int],
                          owner: str = "") -> Preprocessing:
    """mean/std/resample from a checkpoint's ``preprocessor_config.json`` at ``path``.

    ``path=None`` means ``owner`` (a folder or Hub id) has none: the family's defaults are used and a warning
    names them, since training on a guessed normalisation shifts every input. A file that exists but cannot
    be read is an error naming it, never a fallback.
    """
    mean, std, interp = family.default_mean, family.default_std, "bicubic"
    if path is None:
        warnings.warn(f"{owner}: no preprocessor_config.json; using the transformers family defaults "
                      f"image_mean={list(mean)}, image_std={list(std)}, resample=bicubic", stacklevel=3)
        return Preprocessing(image_size=image_size, mean=mean, std=std, interpolation=interp)
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} holds a JSON {type(cfg).__name__}, not an image processor config object")
    mean = _channel_values(cfg.get("image_mean", mean), path, "image_mean")
    std = _channel_values(cfg.get("image_std", std), path, "image_std")
    interp = PIL_RESAMPLE_NAMES.get(cfg.get("resample"), interp)
    return Preprocessing(image_size=image_size, mean=mean, std=std, interpolation=interp)


def _channel_values(value, path: Path, key: str) -> tuple[float, ...]:
    """One number per RGB channel (a single number applies to all three, as transformers' processors allow)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return tuple(float(v) for v in value)
    raise CheckpointError(f"{path}: {key} must be 3 numbers (one per RGB channel), got {value!r}")


def _attention_weights(output) -> torch.Tensor:
    return output[1]


class HFViT(TransferModel):
    """A transformers ``*ForImageClassification`` ViT. Native head: ``model.classifier``."""

    ecosystem = "hf"

    def __init__(self, model: nn.Module, source: str = "", preprocessing: Preprocessing | None = None):
        super().__init__(model, source)
        model_type = model.config.model_type
        self.family = FAMILIES[model_type]
        self._preprocessing = preprocessing or Preprocessing(
            image_size=self.image_size, mean=self.family.default_mean, std=self.family.default_std
        )
        spec = getattr(model.config, HEAD_CONFIG_KEY, None)
        self._head_spec = HeadSpec(**spec) if spec else HeadSpec(
            num_labels=model.config.num_labels, pooling=self.family.native_pooling
        )

    @property
    def backbone(self) -> nn.Module:
        """The encoder without the head (``model.vit``, ``model.dinov2``...); a property, not a submodule."""
        return getattr(self.model, self.model.base_model_prefix)

    # --- geometry -------------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        return to_pair(self.model.config.image_size)

    @property
    def patch_size(self) -> tuple[int, int]:
        return to_pair(self.model.config.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        registers = int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        return self.family.pos_prefix_tokens + registers + self.num_prompt_tokens

    @property
    def num_pos_prefix_tokens(self) -> int:
        return self.family.pos_prefix_tokens

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def pos_embed(self) -> nn.Parameter | None:
        return self.backbone.embeddings.position_embeddings  # None: a BEiT with only relative position bias

    @property
    def patch_kernel(self) -> nn.Conv2d:
        return self.backbone.embeddings.patch_embeddings.projection

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    def _apply_geometry(self, image_size: tuple[int, int], patch_size: tuple[int, int]) -> None:
        config = self.model.config
        config.image_size = image_size[0] if image_size[0] == image_size[1] else list(image_size)
        config.patch_size = patch_size[0] if patch_size[0] == patch_size[1] else list(patch_size)
        embeddings = self.backbone.embeddings
        patches = embeddings.patch_embeddings
        conv = patches.projection  # FlexiViT's PI-resize; a no-op at the same patch size
        conv.weight.data = resample_patch_embed(conv.weight.data, patch_size).contiguous()
        conv.kernel_size = conv.stride = patch_size
        patches.image_size = image_size
        patches.patch_size = patch_size
        patches.num_patches = (image_size[0] // patch_size[0]) * (image_size[1] // patch_size[1])
        if hasattr(embeddings, "image_size"):
            embeddings.image_size = image_size
        if hasattr(embeddings, "patch_size"):
            embeddings.patch_size = config.patch_size
        self._preprocessing = dataclasses.replace(self._preprocessing, image_size=image_size)

    def resize(self, image_size, patch_size=None, interpolation="bicubic", align_corners=None, antialias=None):
        size = to_pair(image_size)
        if self.family.square_table_only and size[0] != size[1]:
            raise ImageSizeError(
                f"{self.model.config.model_type} in transformers assumes a square position table; "
                f"got {size[0]}x{size[1]}. Use a square size for this family."
            )
        if patch_size is not None and to_pair(patch_size)[0] != to_pair(patch_size)[1]:
            raise ImageSizeError("transformers ViTs take a square patch size")
        return super().resize(image_size, patch_size, interpolation, align_corners, antialias)

    # --- head -----------------------------------------------------------------------------
    @property
    def head_spec(self) -> HeadSpec:
        return self._head_spec

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.config.id2label.items()}

    def _has_teacher_head(self) -> bool:
        return hasattr(self.model, "distillation_classifier")

    def _native_head(self) -> bool:
        spec = self._head_spec
        native = (spec.kind == "linear" and spec.dropout == 0 and spec.last_n == 1
                  and spec.pooling == self.family.native_pooling)
        # transformers' own heads average every token after the first: prompts would join that mean
        return native and not (self.num_prompt_tokens and spec.pooling != "cls")

    def head_module_names(self) -> list[str]:
        return ["cls_classifier", "distillation_classifier"] if self._has_teacher_head() else ["classifier"]

    def default_lora_targets(self) -> list[str]:
        leaves = {name.rsplit(".", 1)[-1] for name, m in self.backbone.named_modules() if isinstance(m, nn.Linear)}
        for pair in (["q_proj", "v_proj"], ["query", "value"]):
            if set(pair) <= leaves:
                return pair
        raise NotImplementedError(f"cannot find query/value projections in {type(self.model).__name__}")

    def set_head(self, num_labels, id2label=None, kind="linear", pooling=None, hidden_dim=None, dropout=0.0, init="zeros",
                 last_n=1):
        pooling = pooling or self.family.native_pooling
        spec = HeadSpec(num_labels=int(num_labels), kind=kind, pooling=pooling,
                        hidden_dim=hidden_dim if kind == "mlp" else None, dropout=dropout, last_n=int(last_n))
        in_features = self.feature_dim(pooling, spec.last_n)
        device = self.patch_kernel.weight.device
        if self._has_teacher_head():
            if kind != "linear" or pooling != "cls" or spec.last_n != 1:
                raise ValueError("DeiT with a distillation head takes only a linear class-token head")
            for name in self.head_module_names():
                setattr(self.model, name, build_head(in_features, num_labels, "linear", init=init).to(device))
        else:
            self.model.classifier = build_head(in_features, num_labels, kind, hidden_dim, dropout, init).to(device)
        config = self.model.config
        id2label = id2label or {i: f"LABEL_{i}" for i in range(num_labels)}
        if len(id2label) != num_labels:
            raise ValueError(f"id2label has {len(id2label)} entries for {num_labels} labels")
        config.id2label = {int(k): str(v) for k, v in id2label.items()}
        config.label2id = {str(v): int(k) for k, v in id2label.items()}
        config.num_labels = num_labels
        self._head_spec = spec
        if self._native_head():
            if hasattr(config, HEAD_CONFIG_KEY):
                delattr(config, HEAD_CONFIG_KEY)
        else:
            setattr(config, HEAD_CONFIG_KEY, spec.to_dict())

    def set_attention(self, implementation: str) -> None:
        self.model.set_attn_implementation(check_attention(implementation))

    def token_sites(self):
        # the blocks' ModuleList: `layers` (ViT/DeiT in transformers 5), `encoder.layer` (Dinov2)
        depth = self.model.config.num_hidden_layers
        blocks = next(m for m in self.backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == depth)
        return self.backbone.embeddings, list(blocks)

    def attention_sites(self):
        # the attention modules transformers itself records for output_attentions: their output is (context, weights)
        target = type(self.backbone)._can_record_outputs["attentions"]
        target = getattr(target, "target_class", target)
        return [(m, _attention_weights) for m in self.backbone.modules() if isinstance(m, target)]

    def _drop_path_sites(self) -> list[list[tuple[nn.Module, str]]]:
        # Dinov2's layers own a `drop_path`; ViT and DeiT have none
        return [[(m, "drop_path")] for m in self.backbone.modules() if isinstance(getattr(m, "drop_path", None), nn.Module)]

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        model, kwargs = self.model, {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older names warn there
            model.activation_checkpointing_enable(kwargs) if enabled else model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_enable(kwargs) if enabled else model.gradient_checkpointing_disable()

    def _init_backbone(self) -> None:
        # transformers 5 skips parameters flagged as loaded, so build a fresh model and copy its encoder over
        fresh = type(self.model)(self.model.config)
        self.backbone.load_state_dict(getattr(fresh, fresh.base_model_prefix).state_dict())

    # --- forward --------------------------------------------------------------------------
    def forward_tokens(self, pixel_values: torch.Tensor, last_n: int = 1) -> list[torch.Tensor]:
        pixel_values = self.prepare_pixels(pixel_values)
        if last_n == 1:
            return [self.backbone(pixel_values=pixel_values).last_hidden_state]
        out = self.backbone(pixel_values=pixel_values, output_hidden_states=True)
        norm = self.backbone.layernorm
        return [norm(h) for h in out.hidden_states[-last_n:]]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = self.prepare_pixels(pixel_values)
        if self._native_head():
            return self.model(pixel_values=pixel_values).logits
        if self._head_spec.last_n > 1:
            return self.model.classifier(self.forward_features(pixel_values, self._head_spec.pooling, self._head_spec.last_n))
        tokens = self.backbone(pixel_values=pixel_values).last_hidden_state
        return self.model.classifier(self.pool(tokens, self._head_spec.pooling))

    # --- save -----------------------------------------------------------------------------
    def save(self, output_dir: "str | Path") -> Path:
        from transformers import ViTImageProcessor

        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(output_dir)
        pre = self._preprocessing
        resample = {v: k for k, v in PIL_RESAMPLE_NAMES.items()}.get(pre.interpolation, 3)
        processor = ViTImageProcessor(
            do_resize=True,
            size={"height": pre.image_size[0], "width": pre.image_size[1]},
            resample=resample,
            image_mean=list(pre.mean),
            image_std=list(pre.std),
        )
        processor.save_pretrained(output_dir)
        return output_dir
