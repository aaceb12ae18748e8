"""``load_vit``: one entry point for transformers and timm ViTs, from any source."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError, NotAViTError, UnknownSourceError
from .base import TransferModel, to_pair
from .checkpoints import load_state_dict_file, validate_folder
from .hf_vit import FAMILIES, HEAD_CONFIG_KEY, HFViT, read_hf_preprocessing
from .sources import Source, resolve_source
from .timm_vit import TimmViT


def load_vit(
    source: "str | Path | TransferModel",
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    image_size: "int | tuple[int, int] | None" = None,
    patch_size: "int | tuple[int, int] | None" = None,
    interpolation: str = "bicubic",
    align_corners: bool | None = None,
    antialias: bool | None = None,
    head: str = "linear",
    pooling: str | None = None,
    head_hidden_dim: int | None = None,
    head_dropout: float = 0.0,
    head_init: str = "zeros",
    head_last_n: int | None = None,
    ecosystem: str | None = None,
    architecture: str | None = None,
    reuse_matching_head: bool = True,
) -> TransferModel:
    """Load a pretrained ViT and prepare it for transfer.

    ``source`` is a Hub id, a timm name, a local folder, a local weights file or a model already built
    (adapted in place); ``ecosystem`` forces "hf" or "timm" when the source alone is ambiguous.
    With ``image_size`` the position
    embeddings are resized (see ``TransferModel.resize``); with ``num_labels`` (or ``id2label``) a
    new head replaces the classifier. Head options apply only then. A checkpoint whose head already
    has exactly ``id2label`` (same names, same order, same head kind) keeps its trained head unless
    ``reuse_matching_head=False``: continuing to train a fine-tuned model must not reset it.
    ``head_last_n``: a new head reads the pooled features of the last N blocks (None: 1, or a reused head's).
    """
    if isinstance(source, TransferModel):
        model = source
    else:
        resolved = resolve_source(str(source), ecosystem)
        model = _load_hf(resolved) if resolved.ecosystem == "hf" else _load_timm(resolved, architecture)
        if resolved.kind == "dir":  # VPT prompts a stock layout cannot hold travel beside the weights
            from ..adapters.vpt import load_prompts

            load_prompts(model, resolved.location)
    if image_size is not None or patch_size is not None:
        model.resize(image_size or model.image_size, patch_size, interpolation, align_corners, antialias)
    if id2label is not None and num_labels is None:
        num_labels = len(id2label)
    if num_labels is not None:  # the head options apply (and are checked) only when a head is built
        if head_last_n is not None and not 1 <= head_last_n <= model.depth:
            raise ConfigError(f"model.head_last_n must be 1 to the model's depth ({model.depth} blocks), got "
                              f"{head_last_n} (load_vit's head_last_n)")
        if id2label is not None:
            id2label = {int(k): str(v) for k, v in id2label.items()}
        if not (reuse_matching_head
                and _head_matches(model, num_labels, id2label, head, pooling, head_hidden_dim, head_last_n)):
            model.set_head(num_labels, id2label, head, pooling, head_hidden_dim, head_dropout, head_init,
                           last_n=head_last_n or 1)
    return model


def _head_matches(model: TransferModel, num_labels: int, id2label, kind: str, pooling, hidden_dim,
                  last_n: "int | None" = None) -> bool:
    """True when the checkpoint's head already classifies exactly these named labels the same way."""
    spec = model.head_spec
    if id2label is None or spec.num_labels != num_labels or model.id2label != id2label or spec.kind != kind:
        return False
    if (pooling is not None and spec.pooling != pooling) or (last_n is not None and spec.last_n != last_n):
        return False
    return kind == "linear" or hidden_dim in (None, spec.hidden_dim)


# --- transformers -----------------------------------------------------------------------------
def _load_hf(src: Source) -> HFViT:
    from transformers import AutoConfig, AutoModelForImageClassification

    folder = Path(src.location) if src.kind in ("dir", "builtin") else None
    if folder is not None:
        validate_folder(folder)
    try:
        config = AutoConfig.from_pretrained(src.location)
    except OSError as exc:
        raise UnknownSourceError(_hub_message(src, exc)) from exc
    except ValueError as exc:
        raise NotAViTError(f"{src.original}: transformers cannot read its config ({exc})") from exc
    if config.model_type not in FAMILIES:
        raise NotAViTError(
            f"{src.original} is a {config.model_type!r} model, not a Vision Transformer vit-transfer supports "
            f"(transformers families: {', '.join(FAMILIES)}; or any timm VisionTransformer)"
        )
    if config.model_type == "beit" and config.use_mean_pooling:
        raise NotAViTError(f"{src.original} is a BEiT with a mean-pooled head; vit-transfer reads BEiT only with "
                           "class-token pooling (use_mean_pooling: false), as model.scratch.pos_embed=relative builds it")
    head_spec = getattr(config, HEAD_CONFIG_KEY, None)
    try:
        # a saved non-native head (other pooling width) is rebuilt and reloaded below, so let its shape differ here
        model = AutoModelForImageClassification.from_pretrained(
            src.location, dtype=torch.float32, ignore_mismatched_sizes=bool(head_spec)
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot load weights of {src.original}: {exc}") from exc
    preprocessing = read_hf_preprocessing(
        _preprocessor_config(folder, src), FAMILIES[config.model_type], to_pair(config.image_size),
        owner=str(folder) if folder is not None else f"{src.original} (not in the repo, or not cached offline)",
    )
    wrapped = HFViT(model, source=src.original, preprocessing=preprocessing)
    if head_spec:  # a non-native head: rebuild its modules, then load their saved weights
        spec = dict(head_spec)
        wrapped.set_head(spec.pop("num_labels"), wrapped.id2label, spec["kind"], spec["pooling"], spec["hidden_dim"], spec["dropout"],
                         last_n=spec.get("last_n", 1))
        _load_head_weights(wrapped, folder, src)
    return wrapped


def _preprocessor_config(folder: Path | None, src: Source) -> Path | None:
    """The checkpoint's ``preprocessor_config.json``, or None when it has none (absent from the folder or repo,
    or not cached offline). Any other failure to fetch it is an error: a guessed normalisation is not silent."""
    return _optional_file(str(folder) if folder is not None else src.location, "preprocessor_config.json",
                          src.original)


def _optional_file(location: str, filename: str, original: str) -> Path | None:
    """``filename`` in a local folder or a Hub repo (downloaded or cached), or None when the folder or repo has
    no such file (offline: when the cache has none). Any other failure is a ``CheckpointError`` naming it."""
    if Path(location).is_dir():
        path = Path(location) / filename
        return path if path.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(location, filename))
    except EntryNotFoundError:  # absent from the repo, or (LocalEntryNotFoundError) not cached while offline
        return None
    except Exception as exc:  # network, permissions, a broken cache: name what could not be fetched
        raise CheckpointError(f"cannot fetch {filename} of {original}: {exc}") from exc


def _hub_message(src: Source, exc: Exception) -> str:
    return (
        f"cannot load {src.original!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
        "If it is a Hub id, check the spelling and your network (HF_HUB_OFFLINE=1 allows only cached files)."
    )


def _load_head_weights(wrapped: TransferModel, folder: Path | None, src: Source) -> None:
    names = wrapped.head_module_names()
    state = _saved_tensors(str(folder) if folder is not None else src.location, src.original,
                           tuple(name + "." for name in names))
    for name in names:
        prefix = name + "."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            wrapped.model.get_submodule(name).load_state_dict(sub)
        except RuntimeError as exc:
            raise CheckpointError(f"{src.original}: the saved weights of its custom head {name!r} do not fit it "
                                  f"({str(exc).splitlines()[0]})") from exc


def _saved_tensors(location: str, original: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors under ``prefixes`` from a transformers checkpoint in any layout it writes or reads (one
    safetensors file, safetensors shards, a PyTorch ``.bin``, ``.bin`` shards), in transformers' own order of
    preference (its file-name constants); from a local folder or a Hub repo. Only the shards that hold those
    tensors are read."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    names = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    for name in names:
        found = _optional_file(location, name, original)
        if found is None:
            continue
        files = [Path(found)]
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(Path(found).read_text())["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"cannot read the shard index {found}: {exc}") from exc
            shards = sorted({shard for key, shard in weight_map.items() if key.startswith(prefixes)})
            files = [_optional_file(location, shard, original) for shard in shards]
            if None in files:
                missing = [shard for shard, path in zip(shards, files) if path is None]
                raise CheckpointError(f"{original}: the shard index {found.name} names {', '.join(missing)}, "
                                      "which is missing")
        state: dict[str, torch.Tensor] = {}
        for path in files:
            state.update({k: v for k, v in load_state_dict_file(path).items() if k.startswith(prefixes)})
        return state
    raise CheckpointError(f"{original} records a custom head but has none of {', '.join(names)} to read it from")


# --- timm -------------------------------------------------------------------------------------
def _check_timm_vit(model: torch.nn.Module, src: Source) -> None:
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise NotAViTError(
            f"{src.original} builds a timm {type(model).__name__}, not a VisionTransformer with absolute "
            "position embeddings that vit-transfer can adapt"
        )


def _load_timm(src: Source, architecture: str | None) -> TimmViT:
    import timm

    if src.kind == "file":
        return _load_timm_file(src, architecture)
    if src.kind == "dir":
        folder = Path(src.location)
        validate_folder(folder)
        cfg = json.loads((folder / "config.json").read_text())
        head_spec = cfg.get(HEAD_CONFIG_KEY)
        if not timm.is_model(cfg["architecture"]):
            raise NotAViTError(f"{folder}: timm has no architecture {cfg['architecture']!r}")
        if head_spec:  # timm's strict loader cannot place a non-native head: build it, then load
            model = timm.create_model(cfg["architecture"], pretrained=False, **cfg.get("model_args", {}))
            _check_timm_vit(model, src)
            wrapped = TimmViT(model, src.original, label_names=_label_list(cfg.get("label_names")))
            spec = dict(head_spec)
            wrapped.set_head(spec.pop("num_labels"), wrapped.id2label if cfg.get("label_names") else None,
                             spec["kind"], spec["pooling"], spec["hidden_dim"], spec["dropout"], last_n=spec.get("last_n", 1))
            weights = _first_weights(folder)
            model.load_state_dict(load_state_dict_file(weights))
            model.pretrained_cfg = {**model.pretrained_cfg, **cfg.get("pretrained_cfg", {})}
            return wrapped
        location = f"local-dir:{folder}"
    else:
        location = src.location
    try:
        model = timm.create_model(location, pretrained=True)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise UnknownSourceError(f"timm does not know the model {src.original!r}") from exc
        raise CheckpointError(f"cannot load {src.original}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise UnknownSourceError(_hub_message(src, exc)) from exc
    _check_timm_vit(model, src)
    label_names = _label_list(model.pretrained_cfg.get("label_names"))
    if src.kind == "dir":
        cfg = json.loads((Path(src.location) / "config.json").read_text())
        label_names = _label_list(cfg.get("label_names")) or label_names
        _apply_recorded_layer_norm_eps(model, cfg)
    return TimmViT(model, src.original, label_names=label_names)


def _apply_recorded_layer_norm_eps(model: torch.nn.Module, cfg: dict) -> None:
    """timm rebuilds norms at eps 1e-6; a model converted from transformers (1e-12) records its own."""
    eps = cfg.get("vit_transfer_layer_norm_eps")
    if eps is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = float(eps)


def _label_list(names) -> list[str] | None:
    if not names:
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    return [str(n) for n in names]


def _first_weights(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder} has no model.safetensors or pytorch_model.bin")


def _load_timm_file(src: Source, architecture: str | None) -> TimmViT:
    """A bare weights file: the architecture comes from the caller or a config.json beside it."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    path = Path(src.location)
    sidecar = path.parent / "config.json"
    model_args: dict = {}
    if architecture is None and sidecar.is_file():
        cfg = json.loads(sidecar.read_text())
        architecture = cfg.get("architecture")
        model_args = cfg.get("model_args", {})
    if architecture is None:
        raise UnknownSourceError(
            f"{path} is a bare weights file: pass architecture='vit_base_patch16_224' (the timm model name) "
            "or put its timm config.json beside it"
        )
    if not timm.is_model(architecture):
        raise UnknownSourceError(f"timm has no architecture {architecture!r}")
    state = load_state_dict_file(path)
    head = state.get("head.weight")
    model_args.setdefault("num_classes", int(head.shape[0]) if head is not None else 0)
    pos = state.get("pos_embed")
    patch = state.get("patch_embed.proj.weight")
    model = timm.create_model(architecture, pretrained=False, **model_args)
    _check_timm_vit(model, src)
    if pos is not None and patch is not None and "img_size" not in model_args:
        # keep the checkpoint's own grid rather than resampling it to the architecture default
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        n = pos.shape[1] - prefix
        side = int(round(n**0.5))
        if side * side == n and tuple(patch.shape[-2:]) == tuple(model.patch_embed.patch_size):
            size = (side * patch.shape[-2], side * patch.shape[-1])
            if size != tuple(model.patch_embed.img_size):
                model = timm.create_model(architecture, pretrained=False, img_size=size, **model_args)
    try:
        state = checkpoint_filter_fn(state, model)
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} does not fit timm architecture {architecture!r}: {exc}") from exc
    return TimmViT(model, src.original)


EAGER_MAX_TOKENS = 256


def auto_attention(model: TransferModel, device_type: str | None = None) -> str:
    """``model.attention: auto``: ``eager`` on the CPU for sequences of up to ``EAGER_MAX_TOKENS`` tokens, else
    ``sdpa``. Measured training ViT-S/16 under bf16 on a 2-core AVX512-BF16 CPU: eager 1.12x sdpa at 197 tokens
    (224 px), 1.3-1.9x at 50-65 tokens, 0.83x at 577 tokens (384 px); on GPUs sdpa's fused kernels win."""
    import torch

    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    tokens = model.num_prefix_tokens + model.grid_size[0] * model.grid_size[1]
    return "eager" if device_type == "cpu" and tokens <= EAGER_MAX_TOKENS else "sdpa"


def load_vit_from_config(cfg, num_labels: int | None = None, id2label: dict[int, str] | None = None,
                         seed: int = 0) -> TransferModel:
    """The model a recipe's ``model:`` section (``vit_transfer.config.ModelConfig``) describes: ``load_vit``
    with its options, random weights for ``pretrained: false``, its attention kernel. Training, probing
    and the merge in ``push`` all build it here; ``model.original_image_size`` keeps the checkpoint's size.

    ``source: scratch`` builds a random ViT from ``cfg.scratch`` (pretraining from scratch).
    """
    source = cfg.source
    head_init = "zeros" if cfg.head_init == "probe" else cfg.head_init  # LP-FT: train() fits the probe into it
    if source == "scratch":
        from .scratch import create_vit

        if num_labels is None and id2label is None:
            raise ValueError("a scratch model needs num_labels")
        source = create_vit(cfg.scratch, num_labels or len(id2label), id2label, seed)
    model = load_vit(
        source, num_labels=num_labels, id2label=id2label, image_size=cfg.image_size, patch_size=cfg.patch_size,
        interpolation=cfg.interpolation, head=cfg.head, pooling=cfg.pooling, head_hidden_dim=cfg.head_hidden_dim,
        head_dropout=cfg.head_dropout, head_init=head_init, head_last_n=cfg.head_last_n, ecosystem=cfg.ecosystem,
        architecture=cfg.architecture, reuse_matching_head=cfg.reuse_matching_head,
    )
    if not cfg.pretrained:
        model.reinitialize(seed, head_init)
    model.set_attention(auto_attention(model) if cfg.attention in (None, "auto") else cfg.attention)
    if cfg.gradient_checkpointing:
        model.set_gradient_checkpointing(True)
    if cfg.drop_path_rate:
        model.set_drop_path(cfg.drop_path_rate)
    if cfg.patch_drop_rate:
        if not hasattr(model, "set_patch_dropout"):
            raise ConfigError(f"model.patch_drop_rate is timm's token dropping; {cfg.source} loaded as a "
                              "transformers model (convert it with `vit-transfer convert --to timm`)")
        model.set_patch_dropout(cfg.patch_drop_rate)
    return model
