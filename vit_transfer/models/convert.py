"""Convert a standard ViT between the transformers and timm layouts, keeping its function.

A standard ViT (class token, learned position table, pre-norm blocks with a GELU MLP, final norm,
linear head on the class token) is the same network in both ecosystems; only names and the fused
``attn.qkv`` differ. Conversion reads the source into an ecosystem-free ``VitSpec`` plus a state
dict, builds the other ecosystem's stock model from the spec, and loads the renamed weights with
``strict=True`` so a missed or extra tensor is an error, not a silent random weight.

LayerNorm eps is part of the function: transformers' ViT uses 1e-12, timm's 1e-6. The converted
model in memory always carries the source eps. transformers saves it (``layer_norm_eps``); timm's
``config.json`` cannot express it (``model_args`` are JSON and a ``norm_layer`` string has no eps),
so a stock timm reload of an HF-converted model runs with 1e-6; ``convert_checkpoint`` records the
source value under ``LAYER_NORM_EPS_KEY`` so converting back restores it exactly.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from ..caller_state import eval_mode
from ..errors import ConfigError, NotAViTError, VitTransferError
from .base import TransferModel
from .spec import VitSpec, hf_vit_config

Ecosystem = Literal["hf", "timm"]
ECOSYSTEMS = ("hf", "timm")

# timm config.json key recording the source LayerNorm eps that timm's model_args cannot carry
LAYER_NORM_EPS_KEY = "vit_transfer_layer_norm_eps"

# transformers hidden_act -> the activation it computes; timm act_layer name for each
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}
TIMM_ACT_LAYERS = {"gelu": "gelu", "gelu_tanh": "gelu_tanh"}

# (embed_dim, depth, num_heads) of the stock timm ViT sizes, to pick a fitting architecture name
TIMM_SIZES = {
    (192, 12, 3): "tiny",
    (384, 12, 6): "small",
    (768, 12, 12): "base",
    (1024, 24, 16): "large",
    (1280, 32, 16): "huge",
}
FALLBACK_TIMM_ARCHITECTURE = "vit_base_patch16_224"

STANDARD_VIT = (
    "Only standard ViTs convert: a class token, a learned position table with a row for it, pre-norm "
    "blocks of plain multi-head attention and a GELU MLP, a final LayerNorm and a linear head on the class token"
)


# --- reading a source into a spec + canonical (timm-named) state dict --------------------------------
def _not_convertible(model: TransferModel, reasons: list[str], target: str) -> NotAViTError:
    where = model.source or type(model.model).__name__
    return NotAViTError(f"{where} cannot be converted to {target}: it has {'; '.join(reasons)}. {STANDARD_VIT}.")


def _head_reasons(model: TransferModel) -> list[str]:
    spec = model.head_spec
    reasons = []
    if spec.kind != "linear":
        reasons.append(f"a custom {spec.kind} head (set a linear head first, or convert before replacing it)")
    if spec.pooling != "cls":
        reasons.append(f"{spec.pooling!r} pooling (only the class token maps to both ecosystems' stock heads)")
    if spec.dropout:
        reasons.append(f"a head with dropout {spec.dropout} (no stock equivalent in transformers ViT)")
    return reasons


def read_hf_vit(model: TransferModel) -> tuple[VitSpec, dict[str, torch.Tensor]]:
    """Spec and timm-named weights of a transformers ``ViTForImageClassification``."""
    config = model.model.config
    model_type = getattr(config, "model_type", "?")
    family_reasons = {
        "deit": "a distillation token (DeiT)",
        "dinov2": "layer scale and a class+mean pooled head (DINOv2)",
        "dinov2_with_registers": "register tokens and layer scale (DINOv2 with registers)",
        "beit": "a relative position bias in each block instead of an absolute table (BEiT)",
    }
    reasons = []
    if model_type != "vit":
        reasons.append(family_reasons.get(model_type, f"model type {model_type!r}"))
    elif type(model.model).__name__ != "ViTForImageClassification":
        reasons.append(f"class {type(model.model).__name__} (expected ViTForImageClassification)")
    reasons += _head_reasons(model)
    act = getattr(config, "hidden_act", None)
    if model_type == "vit" and act not in HF_ACTIVATIONS:
        reasons.append(f"activation {act!r} (supported: {', '.join(HF_ACTIVATIONS)})")
    head_dim = getattr(config, "head_dim", None)
    if model_type == "vit" and head_dim and head_dim * config.num_attention_heads != config.hidden_size:
        reasons.append(f"head_dim {head_dim} x {config.num_attention_heads} heads != hidden size {config.hidden_size}")
    if reasons:
        raise _not_convertible(model, reasons, "timm")

    labels = model.id2label
    spec = VitSpec(
        image_size=model.image_size,
        patch_size=model.patch_size,
        num_channels=int(config.num_channels),
        hidden_size=int(config.hidden_size),
        depth=int(config.num_hidden_layers),
        num_heads=int(config.num_attention_heads),
        intermediate_size=int(config.intermediate_size),
        qkv_bias=bool(config.qkv_bias),
        activation=HF_ACTIVATIONS[act],
        layer_norm_eps=float(config.layer_norm_eps),
        num_labels=int(config.num_labels),
        label_names=tuple(labels[i] for i in range(len(labels))),
        preprocessing=model.preprocessing,
        hidden_dropout=float(config.hidden_dropout_prob),
        attention_dropout=float(config.attention_probs_dropout_prob),
    )
    return spec, _hf_to_timm_names(model.model.state_dict(), spec, model)


def _renamed(spec: VitSpec) -> list[tuple[str, str]]:
    """(timm, transformers) names of every tensor that maps one to one; the fused ``qkv`` is handled apart."""
    modules = [("patch_embed.proj", "vit.embeddings.patch_embeddings.projection"), ("norm", "vit.layernorm")]
    for i in range(spec.depth):
        t, h = f"blocks.{i}", f"vit.layers.{i}"
        modules += [(f"{t}.norm1", f"{h}.layernorm_before"), (f"{t}.attn.proj", f"{h}.attention.o_proj"),
                    (f"{t}.norm2", f"{h}.layernorm_after")] + [(f"{t}.mlp.{n}", f"{h}.mlp.{n}") for n in ("fc1", "fc2")]
    if spec.num_labels > 0:
        modules.append(("head", "classifier"))
    return [("cls_token", "vit.embeddings.cls_token"), ("pos_embed", "vit.embeddings.position_embeddings")] + [
        (f"{t}.{p}", f"{h}.{p}") for t, h in modules for p in ("weight", "bias")]


def _qkv(spec: VitSpec) -> list[tuple[str, list[str]]]:
    """timm's fused ``attn.qkv`` rows are [q; k; v] (heads contiguous within each): transformers' three projections."""
    return [(f"blocks.{i}.attn.qkv.{p}", [f"vit.layers.{i}.attention.{n}_proj.{p}" for n in "qkv"])
            for i in range(spec.depth) for p in (("weight", "bias") if spec.qkv_bias else ("weight",))]


def _hf_to_timm_names(hf: dict[str, torch.Tensor], spec: VitSpec, model: TransferModel) -> dict[str, torch.Tensor]:
    hf = dict(hf)

    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise NotAViTError(
                f"{model.source or 'model'}: expected tensor {name!r} in the transformers ViT; this layout "
                "(transformers 5.x names) is the one vit-transfer maps"
            )
        return hf.pop(name)

    out = {t: take(h) for t, h in _renamed(spec)}
    out.update({t: torch.cat([take(n) for n in names], dim=0) for t, names in _qkv(spec)})
    if hf:
        raise _not_convertible(model, [f"tensors with no timm counterpart: {', '.join(sorted(hf))}"], "timm")
    return out


def read_timm_vit(model: TransferModel) -> tuple[VitSpec, dict[str, torch.Tensor]]:
    """Spec and weights of a timm ``VisionTransformer``, after checking it is a standard ViT."""
    from timm.layers import Mlp, PatchEmbed
    from timm.models.vision_transformer import Attention, Block, VisionTransformer

    net = model.model
    reasons = []
    if getattr(net, "dist_token", None) is not None:
        reasons.append("a distillation token (DeiT distilled)")
    elif type(net) is not VisionTransformer:
        reasons.append(f"class {type(net).__name__} (expected timm VisionTransformer)")
    if not getattr(net, "has_class_token", False):
        reasons.append("no class token")
    if getattr(net, "num_reg_tokens", 0):
        reasons.append(f"{net.num_reg_tokens} register tokens")
    if getattr(net, "no_embed_class", False):
        reasons.append("a position table without rows for the class token (no_embed_class)")
    if getattr(net, "pos_embed", None) is None:
        reasons.append("no learned position embeddings")
    if getattr(net, "global_pool", "token") != "token":
        reasons.append(f"global_pool={net.global_pool!r} (only 'token', the class token, maps to transformers)")
    if not isinstance(getattr(net, "norm_pre", nn.Identity()), nn.Identity):
        reasons.append("a norm before the blocks (pre_norm, CLIP style)")
    if isinstance(getattr(net, "norm", nn.Identity()), nn.Identity):
        reasons.append("no final norm")
    if not isinstance(getattr(net, "fc_norm", nn.Identity()), nn.Identity):
        reasons.append("a norm after pooling (fc_norm)")
    if not isinstance(getattr(net, "head", None), (nn.Linear, nn.Identity)):
        reasons.append(f"a {type(getattr(net, 'head', None)).__name__} head (expected one Linear)")
    reasons += _head_reasons(model)
    patch = getattr(net, "patch_embed", None)
    if type(patch) is not PatchEmbed or patch.proj.bias is None or not isinstance(patch.norm, nn.Identity):
        reasons.append("a non-standard patch embedding (no bias, a norm, or another class)")
    if reasons:  # the block checks below assume the top-level layout is standard
        raise _not_convertible(model, reasons, "transformers")

    acts, eps, hidden, qkv_bias = set(), set(), set(), set()
    for norm in [net.norm] + [n for b in net.blocks for n in (b.norm1, b.norm2)]:
        if not isinstance(norm, nn.LayerNorm) or norm.weight is None or norm.bias is None:
            reasons.append(f"a {type(norm).__name__} norm (expected LayerNorm with weight and bias)")
            break
        eps.add(float(norm.eps))
    for block in net.blocks:
        if type(block) is not Block:
            reasons.append(f"blocks of class {type(block).__name__} (expected timm Block)")
            continue
        if not (isinstance(block.ls1, nn.Identity) and isinstance(block.ls2, nn.Identity)):
            reasons.append("layer scale (init_values)")
        attn, mlp = block.attn, block.mlp
        if type(attn) is not Attention or not all(
            isinstance(getattr(attn, n, nn.Identity()), nn.Identity) for n in ("q_norm", "k_norm", "norm")
        ) or attn.proj.bias is None:
            reasons.append("non-standard attention (qk norm, scale norm, no proj bias or another class)")
            continue
        qkv_bias.add(attn.qkv.bias is not None)
        plain_mlp = type(mlp) is Mlp and isinstance(mlp.norm, nn.Identity)
        if not plain_mlp or mlp.fc1.bias is None or mlp.fc2.bias is None:
            reasons.append("a custom MLP (SwiGLU, a norm, no bias or another class)")
            continue
        hidden.add(mlp.fc1.out_features)
        acts.add(_timm_activation(mlp.act))
    if None in acts:
        reasons.append("a non-GELU MLP activation (supported: exact GELU and tanh GELU)")
    for name, values in (("activations", acts), ("LayerNorm eps values", eps), ("MLP widths", hidden),
                         ("qkv bias settings", qkv_bias)):
        if len(values) > 1:
            reasons.append(f"{name} that differ between blocks ({sorted(values, key=str)})")
    if reasons:
        raise _not_convertible(model, sorted(set(reasons), key=reasons.index), "transformers")

    labels = model.id2label
    block0 = net.blocks[0]
    spec = VitSpec(
        image_size=model.image_size,
        patch_size=model.patch_size,
        num_channels=int(patch.proj.in_channels),
        hidden_size=int(net.embed_dim),
        depth=len(net.blocks),
        num_heads=int(block0.attn.num_heads),
        intermediate_size=hidden.pop(),
        qkv_bias=qkv_bias.pop(),
        activation=acts.pop(),
        layer_norm_eps=eps.pop(),
        num_labels=int(net.num_classes),
        label_names=tuple(labels[i] for i in range(len(labels))),
        preprocessing=model.preprocessing,
        hidden_dropout=float(block0.attn.proj_drop.p),
        attention_dropout=float(block0.attn.attn_drop.p),
    )
    state = dict(net.state_dict())
    if spec.num_labels == 0:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    return spec, state


def _timm_activation(act: nn.Module) -> str | None:
    from timm.layers.activations import GELU, GELUTanh

    if isinstance(act, GELUTanh) or (isinstance(act, nn.GELU) and act.approximate == "tanh"):
        return "gelu_tanh"
    if isinstance(act, GELU) or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    return None


def read_vit(model: TransferModel) -> tuple[VitSpec, dict[str, torch.Tensor]]:
    """The ecosystem-free spec and timm-named state dict of a convertible ViT."""
    if model.ecosystem == "hf":
        return read_hf_vit(model)
    if model.ecosystem == "timm":
        return read_timm_vit(model)
    raise NotAViTError(f"cannot convert a {type(model).__name__} (ecosystem {model.ecosystem!r}): {STANDARD_VIT}")


# --- building the target ----------------------------------------------------------------------------
def timm_architecture_for(spec: VitSpec) -> str:
    """A registered plain ``vit_*`` name that fits the spec (e.g. ``vit_base_patch16_224``).

    The name is only a label and a factory: every geometry argument is passed (and saved) as
    ``model_args``, so the fallback name builds the right model too.
    """
    import timm

    size = TIMM_SIZES.get((spec.hidden_size, spec.depth, spec.num_heads))
    ph, pw = spec.patch_size
    if size is None or spec.intermediate_size != 4 * spec.hidden_size or ph != pw:
        return FALLBACK_TIMM_ARCHITECTURE
    h, w = spec.image_size
    for img in ([h] if h == w else []) + [224]:
        name = f"vit_{size}_patch{ph}_{img}"
        if timm.is_model(name):
            return name
    return FALLBACK_TIMM_ARCHITECTURE


def timm_model_args(spec: VitSpec) -> dict:
    """The JSON ``model_args`` that rebuild the spec's network with ``timm.create_model``."""
    size = spec.image_size if spec.image_size[0] != spec.image_size[1] else spec.image_size[0]
    patch = spec.patch_size if spec.patch_size[0] != spec.patch_size[1] else spec.patch_size[0]
    return dict(
        img_size=size,
        patch_size=patch,
        in_chans=spec.num_channels,
        embed_dim=spec.hidden_size,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=spec.mlp_ratio,
        qkv_bias=spec.qkv_bias,
        num_classes=spec.num_labels,
        global_pool="token",
        class_token=True,
        act_layer=TIMM_ACT_LAYERS[spec.activation],
    )


def _timm_pretrained_cfg(spec: VitSpec, architecture: str) -> dict:
    pre = spec.preprocessing
    return dict(
        architecture=architecture,
        input_size=(spec.num_channels, *spec.image_size),
        fixed_input_size=True,
        interpolation=pre.interpolation,
        crop_pct=float(pre.crop_pct),
        crop_mode="center",
        mean=tuple(pre.mean),
        std=tuple(pre.std),
        num_classes=spec.num_labels,
        first_conv="patch_embed.proj",
        classifier="head",
    )


def build_timm_vit(spec: VitSpec, state: dict[str, torch.Tensor], source: str = "") -> TransferModel:
    """A ``TimmViT`` with the spec's geometry, the given (timm-named) weights and the source eps."""
    import timm

    from .timm_vit import TimmViT

    architecture = timm_architecture_for(spec)
    args = timm_model_args(spec)
    if int(spec.hidden_size * args["mlp_ratio"]) != spec.intermediate_size:
        raise NotAViTError(
            f"MLP width {spec.intermediate_size} is not expressible as timm's int(embed_dim * mlp_ratio) "
            f"for embed_dim {spec.hidden_size}"
        )
    net = timm.create_model(
        architecture, pretrained=False, proj_drop_rate=spec.hidden_dropout, pos_drop_rate=spec.hidden_dropout,
        attn_drop_rate=spec.attention_dropout, **args,
    )
    _set_layer_norm_eps(net, spec.layer_norm_eps)
    net.load_state_dict(state, strict=True)
    net.pretrained_cfg = _timm_pretrained_cfg(spec, architecture)
    if hasattr(net, "default_cfg"):
        net.default_cfg = net.pretrained_cfg
    labels = list(spec.label_names) if len(spec.label_names) == spec.num_labels and spec.num_labels else None
    return TimmViT(net.eval(), source, label_names=labels)


def _set_layer_norm_eps(net: nn.Module, eps: float) -> None:
    for module in net.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = eps


def _timm_to_hf_names(state: dict[str, torch.Tensor], spec: VitSpec) -> dict[str, torch.Tensor]:
    out = {h: state[t] for t, h in _renamed(spec)}
    for t, names in _qkv(spec):
        out.update({n: part.clone() for n, part in zip(names, state[t].chunk(3, dim=0))})
    return out


def build_hf_vit(spec: VitSpec, state: dict[str, torch.Tensor], source: str = "") -> TransferModel:
    """An ``HFViT`` (``ViTForImageClassification``) with the spec's config and the given timm-named weights."""
    from transformers import ViTForImageClassification

    from .hf_vit import HFViT

    net = ViTForImageClassification(hf_vit_config(spec))
    net.load_state_dict(_timm_to_hf_names(state, spec), strict=True)
    return HFViT(net.eval(), source, preprocessing=replace(spec.preprocessing, image_size=spec.image_size))


# --- public API -------------------------------------------------------------------------------------
def _check_target(to: str) -> str:
    if to not in ECOSYSTEMS:
        raise ConfigError(f"unknown conversion target {to!r}: use 'hf' (transformers) or 'timm'")
    return to


def convert_vit(model: TransferModel, to: Ecosystem) -> TransferModel:
    """The same network in the other ecosystem: equal logits, same labels and preprocessing.

    Raises ``NotAViTError`` naming every feature that has no counterpart (distillation or register
    tokens, layer scale, non-GELU activations, custom heads, pooling other than the class token).
    """
    _check_target(to)
    if model.ecosystem == to:
        raise ConfigError(f"{model.source or 'the model'} is already a {to} model; convert to the other ecosystem")
    spec, state = read_vit(model)
    device = next(model.parameters()).device
    state = {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}
    build = build_timm_vit if to == "timm" else build_hf_vit
    return build(spec, state, model.source).to(device).train(model.training)  # the source's mode, as a copy would


def convert_checkpoint(
    source: "str | Path",
    to: Ecosystem,
    output_dir: "str | Path",
    *,
    ecosystem: str | None = None,
    architecture: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Load ``source`` with ``load_vit``, convert it, and save it in ``to``'s stock layout.

    With ``verify`` the written folder is reloaded and its logits compared with the source's on a
    seeded random batch; a difference beyond float noise raises ``VitTransferError``. ``log``
    receives one line per step (the CLI passes ``print``).
    """
    from .loading import load_vit

    _check_target(to)
    say = log or (lambda line: None)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"output folder {output_dir} is not empty; choose a new folder or pass --overwrite (overwrite=True)"
        )
    model = load_vit(source, ecosystem=ecosystem, architecture=architecture).eval()
    if model.ecosystem == "timm":
        _restore_recorded_eps(model, source)
    spec, _ = read_vit(model)
    say(f"read {source} ({model.ecosystem}: {spec.summary()})")
    converted = convert_vit(model, to)
    converted.save(output_dir)
    if to == "timm":
        _record_eps(output_dir, spec.layer_norm_eps)
        name = json.loads((output_dir / "config.json").read_text())["architecture"]
        say(f"wrote timm {name} (model_args carry the geometry) to {output_dir}")
        if spec.layer_norm_eps != 1e-6:
            say(f"note: timm reloads LayerNorm with eps 1e-6 (source {spec.layer_norm_eps:g}); "
                f"recorded under {LAYER_NORM_EPS_KEY!r} so converting back restores it")
    else:
        say(f"wrote transformers ViTForImageClassification to {output_dir}")
    if verify:
        diff = _verify(model, output_dir, to)
        say(f"verified: reloaded {to} logits differ from the source by at most {diff:.2e}")
    return output_dir


def _record_eps(folder: Path, eps: float) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg[LAYER_NORM_EPS_KEY] = eps
    path.write_text(json.dumps(cfg, indent=2))


def _restore_recorded_eps(model: TransferModel, source: "str | Path") -> None:
    """Apply the eps a previous HF -> timm conversion recorded, so converting back is exact."""
    path = Path(source) / "config.json"
    if path.is_file():
        eps = json.loads(path.read_text()).get(LAYER_NORM_EPS_KEY)
        if eps is not None:
            _set_layer_norm_eps(model.model, float(eps))


def _logits(model: TransferModel, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return model(x.to(next(model.parameters()).device)).float().cpu()


def _random_batch(model: TransferModel, batch_size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, int(model.patch_kernel.in_channels), *model.image_size, generator=generator)


def max_logit_difference(a: TransferModel, b: TransferModel, batch_size: int = 2, seed: int = 0) -> float:
    """Largest absolute logit difference of two models on a seeded random normalised batch."""
    x = _random_batch(a, batch_size, seed)
    la, lb = _logits(a, x), _logits(b, x)
    if la.shape != lb.shape:
        raise VitTransferError(f"converted model gives logits of shape {tuple(lb.shape)}, source {tuple(la.shape)}")
    return float((la - lb).abs().max()) if la.numel() else 0.0


def _verify(model: TransferModel, folder: Path, to: str) -> float:
    """Reload what was written and compare logits; float noise and the eps note pass, a mapping bug does not."""
    from .loading import load_vit

    reloaded = load_vit(folder, ecosystem=to)
    diff = max_logit_difference(model, reloaded)
    scale = max(1.0, float(_logits(model, _random_batch(model, 2, 0)).abs().max()))
    if diff > 1e-3 * scale:
        raise VitTransferError(
            f"conversion check failed: the reloaded {to} model's logits differ from the source by {diff:.3g}; "
            f"this is a vit-transfer bug, please report it with the source {model.source!r}"
        )
    return diff
