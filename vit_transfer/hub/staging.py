"""Write the exact folder that gets uploaded: the files each ecosystem's stock loader expects.

One function per thing a user can push (``--what``): the full model (transformers or timm hub
layout), the LoRA adapter alone (peft layout), or the merged model (the run's merged ``model/``,
or built here from the base model plus the adapter). ``--dry-run DIR`` is this folder, kept.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..models.base import to_pair
from .errors import HubError, NoTrainedModelError
from ..runs.folder import ADAPTER_INFO_FILE, RunFolder, folder_ecosystem, model_with_adapter, read_json

logger = logging.getLogger(__name__)

WHAT_CHOICES = ("auto", "model", "adapter", "merged")
# What a stock loader reads from a model folder; anything else there (logs, optimizer state) stays home.
MODEL_FILE_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*-of-*.bin",
    "pytorch_model.bin.index.json",
    "vpt_prompts.safetensors",  # adapters.vpt.PROMPTS_FILE: prompts load_vit re-applies
)
ADAPTER_FILE_PATTERNS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", ADAPTER_INFO_FILE)
LIBRARY_NAMES = {"hf": "transformers", "timm": "timm"}


@dataclass
class StagedModel:
    """The folder to upload and what the model card needs to know about its contents."""

    folder: Path
    what: str  # "model" | "adapter" | "merged"
    ecosystem: str  # "hf" | "timm": the base model's ecosystem
    library_name: str  # "transformers" | "timm" | "peft"
    files: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None
    patch_size: tuple[int, int] | None = None
    num_labels: int | None = None
    id2label: dict[int, str] = field(default_factory=dict)
    architecture: str | None = None  # timm architecture or transformers class
    custom_head: dict | None = None  # a vit-transfer head the stock loader cannot rebuild


def merges_adapter(method: str | None) -> bool:
    """Whether a run of ``method`` writes a peft adapter, so that its ``model/`` is the merged model."""
    from ..methods import METHODS

    return method in METHODS and METHODS[method].writes_adapter


def resolve_what(run: RunFolder, what: str) -> str:
    """Turn ``auto`` into a concrete choice and check the run holds what was asked for."""
    if what not in WHAT_CHOICES:
        raise HubError(f"what must be one of {', '.join(WHAT_CHOICES)}, got {what!r}")
    problems = f" ({'; '.join(run.problems)})" if run.problems else ""
    if what == "auto":
        if run.model_dir is not None:
            return "merged" if run.adapter_dir is not None or merges_adapter(run.method) else "model"
        return "adapter"
    if what == "adapter" and run.adapter_dir is None:
        raise NoTrainedModelError(
            f"{run.root} has no LoRA adapter to push: adapter/ with adapter_config.json and "
            f"adapter_model.safetensors is missing{problems}; push the full model with --what model"
        )
    if what == "model" and run.model_dir is None:
        hint = "; this run has a LoRA adapter: push it with --what adapter or --what merged" if run.adapter_dir else ""
        raise NoTrainedModelError(
            f"{run.root} has no full model to push: model/ with config.json and model.safetensors is missing"
            f"{problems}{hint}"
        )
    if what == "merged" and run.model_dir is None and run.adapter_dir is None:
        raise NoTrainedModelError(f"{run.root} has neither a merged model/ nor an adapter/ to merge{problems}")
    if what == "merged" and run.adapter_dir is None and not merges_adapter(run.method):
        kind = f"a {run.method!r} run" if run.method else "a model without run metadata"
        raise HubError(f"{run.root} is {kind} with no LoRA adapter: there is nothing to merge; use --what model")
    return what


def stage(run: RunFolder, what: str, dest: Path, *, link: bool = False) -> StagedModel:
    """Fill ``dest`` (empty or new) with the files for ``what``; the card is added by the caller."""
    what = resolve_what(run, what)
    dest.mkdir(parents=True, exist_ok=True)
    if what == "adapter":
        staged = _stage_adapter(run, dest, link)
    elif what == "merged" and run.model_dir is None:
        staged = _stage_merged_from_adapter(run, dest)
    else:
        staged = _stage_model(run, run.model_dir, dest, link)
        staged.what = "merged" if merges_adapter(run.method) else what  # an adapter run's model/ is the merged model
    staged.files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    return staged


# --- full models ----------------------------------------------------------------------------
def _place(src: Path, dst: Path, link: bool) -> None:
    """Hard-link when staging in a temp folder (no copy of big weights), else copy."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _copy_matching(src_dir: Path, dest: Path, patterns: tuple[str, ...], link: bool) -> list[str]:
    copied = []
    for path in sorted(src_dir.iterdir()):
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            _place(path, dest / path.name, link)
            copied.append(path.name)
    return copied


def _stage_model(run: RunFolder, model_dir: Path, dest: Path, link: bool) -> StagedModel:
    ecosystem = folder_ecosystem(model_dir)
    _copy_matching(model_dir, dest, MODEL_FILE_PATTERNS, link)
    if ecosystem == "hf":
        if not (dest / "preprocessor_config.json").is_file():
            _write_hf_preprocessor(dest)
        return _summarise_hf(dest, "model")
    _add_timm_label_names(dest, run)
    return _summarise_timm(dest, "model")


def _write_hf_preprocessor(folder: Path) -> None:
    """``pipeline("image-classification")`` needs one; build it from the config's size and family."""
    from transformers import ViTImageProcessor

    from ..models.hf_vit import FAMILIES

    cfg = read_json(folder / "config.json")
    h, w = to_pair(cfg.get("image_size", 224))
    family = FAMILIES.get(cfg.get("model_type", "vit"), FAMILIES["vit"])
    ViTImageProcessor(
        do_resize=True, size={"height": h, "width": w}, resample=3,
        image_mean=list(family.default_mean), image_std=list(family.default_std),
    ).save_pretrained(folder)
    logger.info("model folder had no preprocessor_config.json; wrote one for %dx%d", h, w)


def _add_timm_label_names(folder: Path, run: RunFolder) -> None:
    """timm keeps class names in ``label_names``; fill it from the run when the save left it out."""
    path = folder / "config.json"
    cfg = read_json(path)
    id2label = run.run_info.get("id2label")
    if cfg.get("label_names") or not id2label or len(id2label) != cfg.get("num_classes"):
        return
    cfg["label_names"] = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if path.stat().st_nlink > 1:  # a hard link to the run's own file: write a separate copy
        path.unlink()
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def _summarise_hf(folder: Path, what: str) -> StagedModel:
    from ..models.hf_vit import HEAD_CONFIG_KEY

    cfg = read_json(folder / "config.json")
    id2label = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
    return StagedModel(
        folder=folder, what=what, ecosystem="hf", library_name="transformers",
        image_size=to_pair(cfg["image_size"]) if "image_size" in cfg else None,
        patch_size=to_pair(cfg["patch_size"]) if "patch_size" in cfg else None,
        num_labels=len(id2label) or cfg.get("num_labels"), id2label=id2label,
        architecture=(cfg.get("architectures") or [cfg.get("model_type")])[0],
        custom_head=_vit_transfer_parts(folder, cfg.get(HEAD_CONFIG_KEY)),
    )


def _summarise_timm(folder: Path, what: str) -> StagedModel:
    from ..models.timm_vit import HEAD_CONFIG_KEY

    cfg = read_json(folder / "config.json")
    input_size = (cfg.get("pretrained_cfg") or {}).get("input_size")
    patch = (cfg.get("model_args") or {}).get("patch_size")
    names = cfg.get("label_names") or []
    return StagedModel(
        folder=folder, what=what, ecosystem="timm", library_name="timm",
        image_size=(int(input_size[1]), int(input_size[2])) if input_size else None,
        patch_size=to_pair(patch) if patch else None,
        num_labels=cfg.get("num_classes"), id2label=dict(enumerate(str(n) for n in names)),
        architecture=cfg.get("architecture"), custom_head=_vit_transfer_parts(folder, cfg.get(HEAD_CONFIG_KEY)),
    )


def _vit_transfer_parts(folder: Path, head: "dict | None") -> "dict | None":
    """What only ``load_vit`` rebuilds: a vit-transfer head, and VPT prompts kept beside the weights."""
    from ..adapters.vpt import PROMPTS_FILE

    parts = dict(head or {})
    if (folder / PROMPTS_FILE).is_file():
        parts["prompts"] = PROMPTS_FILE
    return parts or None


# --- adapters -------------------------------------------------------------------------------
def _stage_adapter(run: RunFolder, dest: Path, link: bool) -> StagedModel:
    adapter_dir = run.adapter_dir
    _copy_matching(adapter_dir, dest, ADAPTER_FILE_PATTERNS, link)
    cfg = read_json(dest / "adapter_config.json")
    base = run.run_info.get("base_model")
    if not cfg.get("base_model_name_or_path") and base:
        # peft records the base only for transformers models; name it so readers know what to load.
        cfg["base_model_name_or_path"] = base
        (dest / "adapter_config.json").unlink()
        (dest / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    info = run.run_info
    ecosystem = info.get("ecosystem") or ("hf" if (cfg.get("auto_mapping") or {}).get("parent_library", "").startswith("transformers") else "timm")
    id2label = {int(k): str(v) for k, v in (info.get("id2label") or {}).items()}
    return StagedModel(
        folder=dest, what="adapter", ecosystem=ecosystem, library_name="peft",
        image_size=to_pair(info["image_size"]) if info.get("image_size") else None,
        patch_size=to_pair(info["patch_size"]) if info.get("patch_size") else None,
        num_labels=info.get("num_labels") or (len(id2label) or None), id2label=id2label,
        architecture=(cfg.get("auto_mapping") or {}).get("base_model_class"),
    )


def _stage_merged_from_adapter(run: RunFolder, dest: Path) -> StagedModel:
    """Rebuild the training-time base (size, head) from the run's recipe and metadata, load the adapter, merge."""
    from ..adapters.peft_adapter import merge_adapter

    try:
        base = model_with_adapter(run)
    except HubError as exc:
        raise HubError(f"cannot merge: {exc}; push the adapter alone with --what adapter") from exc
    logger.info("merging peft adapter %s into %s", run.adapter_dir, base.source)
    merge_adapter(base)
    base.save(dest)
    staged = _summarise_hf(dest, "merged") if base.ecosystem == "hf" else _summarise_timm(dest, "merged")
    return staged
