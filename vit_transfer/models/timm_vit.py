"""``TimmViT``: a timm ``VisionTransformer`` behind ``TransferModel``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..layers import build_head, pool_tokens
from .base import HeadSpec, Preprocessing, TransferModel, check_attention, to_pair

# Key in timm's config.json under which a non-native head is recorded for load_vit.
HEAD_CONFIG_KEY = "vit_transfer_head"
TIMM_POOL = {"cls": "token", "mean": "avg"}


def _identity(output) -> torch.Tensor:
    return output


class TimmViT(TransferModel):
    """A timm ViT. Native head: ``model.head`` over ``global_pool`` (``token`` or ``avg``)."""

    ecosystem = "timm"

    def __init__(self, model: nn.Module, source: str = "", head_spec: dict | None = None,
                 label_names: list[str] | None = None):
        super().__init__(model, source)
        pooling = {"token": "cls", "avg": "mean"}.get(model.global_pool, "cls")
        self._head_spec = HeadSpec(**head_spec) if head_spec else HeadSpec(num_labels=model.num_classes, pooling=pooling)
        self._label_names = list(label_names) if label_names else None

    # --- geometry -------------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int]:
        return to_pair(self.model.patch_embed.img_size)

    @property
    def patch_size(self) -> tuple[int, int]:
        return to_pair(self.model.patch_embed.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.model.num_prefix_tokens) + self.num_prompt_tokens

    @property
    def num_pos_prefix_tokens(self) -> int:
        return 0 if self.model.no_embed_class else int(self.model.num_prefix_tokens)

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim)

    @property
    def pos_embed(self) -> nn.Parameter:
        return self.model.pos_embed

    @property
    def patch_kernel(self) -> nn.Conv2d:
        return self.model.patch_embed.proj

    @property
    def preprocessing(self) -> Preprocessing:
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=self.model)
        return Preprocessing(
            image_size=self.image_size,
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            interpolation=cfg.get("interpolation", "bicubic"),
            crop_pct=float(cfg.get("crop_pct", 1.0)),
        )

    def _apply_geometry(self, image_size: tuple[int, int], patch_size: tuple[int, int]) -> None:
        self.model.set_input_size(img_size=image_size, patch_size=patch_size)  # kernel PI-resized by timm

    # --- head -----------------------------------------------------------------------------
    @property
    def head_spec(self) -> HeadSpec:
        return self._head_spec

    @property
    def id2label(self) -> dict[int, str]:
        names = self._label_names
        if names is None:
            names = self.model.pretrained_cfg.get("label_names") if hasattr(self.model, "pretrained_cfg") else None
        if not names or len(names) != self.num_labels:
            return {i: f"LABEL_{i}" for i in range(self.num_labels)}
        return dict(enumerate(names))

    def _native_head(self) -> bool:
        spec = self._head_spec
        native = spec.kind == "linear" and spec.dropout == 0 and spec.last_n == 1 and spec.pooling in TIMM_POOL
        # timm's own average pooling skips only its own prefix tokens: prompts would join the mean
        return native and not (self.num_prompt_tokens and spec.pooling != "cls")

    def head_module_names(self) -> list[str]:
        return ["head"]

    def default_lora_targets(self) -> list[str]:
        return ["qkv", "proj"]

    def set_head(self, num_labels, id2label=None, kind="linear", pooling=None, hidden_dim=None, dropout=0.0, init="zeros",
                 last_n=1):
        pooling = pooling or self._head_spec.pooling
        spec = HeadSpec(num_labels=int(num_labels), kind=kind, pooling=pooling,
                        hidden_dim=hidden_dim if kind == "mlp" else None, dropout=dropout, last_n=int(last_n))
        self.model.reset_classifier(int(num_labels), global_pool=TIMM_POOL.get(pooling, "token"))
        device = self.pos_embed.device
        self.model.head = build_head(self.feature_dim(pooling, spec.last_n), num_labels, kind, hidden_dim, dropout, init).to(device)
        if id2label is not None and len(id2label) != num_labels:
            raise ValueError(f"id2label has {len(id2label)} entries for {num_labels} labels")
        self._label_names = [str(id2label[i]) for i in range(num_labels)] if id2label else None
        self._head_spec = spec

    def set_attention(self, implementation: str) -> None:
        fused = check_attention(implementation) == "sdpa"
        for module in self.model.modules():
            if hasattr(module, "fused_attn"):  # timm's Attention picks its kernel per call from this flag
                module.fused_attn = fused

    def token_sites(self):
        return self.model.norm_pre, list(self.model.blocks)

    def attention_sites(self):
        # timm's non-fused Attention passes the softmax through attn_drop (AttentionExtract's default hook site)
        sites = [getattr(block.attn, "attn_drop", None) for block in self.model.blocks]
        if any(site is None for site in sites):
            from ..errors import NotAViTError

            raise NotAViTError(f"{type(self.model).__name__}: a block's attention has no attn_drop to read maps from")
        return [(site, _identity) for site in sites]

    def _drop_path_sites(self) -> list[list[tuple[nn.Module, str]]]:
        names = ("drop_path1", "drop_path2", "drop_path")
        return [[(block, n) for n in names if hasattr(block, n)] for block in self.model.blocks]

    def set_patch_dropout(self, rate: float) -> None:
        """timm's token dropping: each training step keeps a random ``1 - rate`` of the patch tokens (prefix
        tokens always), a speed option; eval sees every token. Not saved with the model."""
        from timm.layers import PatchDropout

        from ..errors import ConfigError

        if not 0.0 <= rate < 1.0:
            raise ConfigError(f"model.patch_drop_rate must be in [0, 1), got {rate}")
        self.model.patch_drop = PatchDropout(rate, num_prefix_tokens=self.model.num_prefix_tokens) if rate else nn.Identity()

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.model.set_grad_checkpointing(enabled)  # timm checkpoints non-reentrantly unless TIMM_REENTRANT_CKPT

    def _init_backbone(self) -> None:
        self.model.init_weights()

    # --- forward --------------------------------------------------------------------------
    def forward_tokens(self, pixel_values: torch.Tensor, last_n: int = 1) -> list[torch.Tensor]:
        pixel_values = self.prepare_pixels(pixel_values)
        if last_n == 1:
            return [self.model.forward_features(pixel_values)]
        outs = self.model.forward_intermediates(
            pixel_values, indices=last_n, return_prefix_tokens=True, norm=True,
            output_fmt="NLC", intermediates_only=True,
        )
        return [torch.cat([prefix, spatial], dim=1) if prefix is not None else spatial for spatial, prefix in outs]

    def pool(self, tokens: torch.Tensor, pooling: str) -> torch.Tensor:
        """Pooling, then timm's ``fc_norm`` on each pooled vector, as ``forward_head`` does: in a model built with
        one (``fc_norm=True``, MAE-style ``global_pool='avg'``) it is the final norm, whatever the pooling."""
        if pooling == "cls+mean":
            return torch.cat([self.pool(tokens, "cls"), self.pool(tokens, "mean")], dim=-1)
        return self.model.fc_norm(pool_tokens(tokens, pooling, self.num_prefix_tokens))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = self.prepare_pixels(pixel_values)
        if self._native_head():
            return self.model(pixel_values)
        spec = self._head_spec
        if spec.last_n > 1:
            pooled = self.forward_features(pixel_values, spec.pooling, spec.last_n)
        else:
            pooled = self.pool(self.model.forward_features(pixel_values), spec.pooling)
        return self.model.head(self.model.head_drop(pooled))

    # --- save -----------------------------------------------------------------------------
    def save(self, output_dir: "str | Path") -> Path:
        """timm's hub layout (``config.json`` + ``model.safetensors``): ``local-dir:``/``hf-hub:`` reload it."""
        from timm.models import save_for_hf

        output_dir = Path(output_dir)
        model_config: dict = {}
        if self._label_names:
            model_config["label_names"] = list(self._label_names)
        if not self._native_head():
            model_config[HEAD_CONFIG_KEY] = self._head_spec.to_dict()
        save_for_hf(self.model, output_dir, model_config=model_config, safe_serialization=True)
        return output_dir
