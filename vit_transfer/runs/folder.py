"""Read what a training run left behind: the model, the LoRA adapter and the run's metadata.

``push`` accepts either a run folder (``model/``, ``adapter/``, ``run_info.json``, ``metrics.json``,
``recipe.yaml``; see docs/architecture.md) or a saved model / adapter folder on its own. Missing
metadata is fine (the card says less); a missing model is an error that names the missing file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..models.sources import folder_ecosystem
from ..errors import NoTrainedModelError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
ADAPTER_INFO_FILE = "vit_transfer_adapter.json"  # written beside the adapter by vit_transfer.adapters.save_adapter
RUN_INFO_FROM_ADAPTER = ("base_model", "ecosystem", "image_size", "patch_size", "num_labels", "id2label")
# Module names of peft's wrappers around any tuner's layer (peft names them in code, not in a constant).
PEFT_WRAPPER_NAMES = ("base_layer", "modules_to_save", "original_module")


@dataclass
class RunFolder:
    """A training run (or a bare model folder) as push sees it."""

    root: Path
    model_dir: Path | None = None
    adapter_dir: Path | None = None
    run_info: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # why a model/ or adapter/ was not usable

    @property
    def model_ecosystem(self) -> str | None:
        return folder_ecosystem(self.model_dir) if self.model_dir else None

    @property
    def adapter_config(self) -> dict:
        return read_json(self.adapter_dir / "adapter_config.json") if self.adapter_dir else {}

    @property
    def adapter_info(self) -> dict:
        """``vit_transfer_adapter.json``: the base, size, labels and head the adapter was trained on."""
        path = self.adapter_dir / ADAPTER_INFO_FILE if self.adapter_dir else None
        return read_json(path) if path is not None and path.is_file() else {}

    @property
    def method(self) -> str | None:
        return self.run_info.get("method") or ("lora" if self.adapter_dir else None)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NoTrainedModelError(f"{path} is not valid JSON ({exc}); was the run interrupted while writing it?") from exc
    if not isinstance(data, dict):
        raise NoTrainedModelError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _weights_in(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def model_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a full model the stock loaders can read, or None if it is one."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json"
    weights = _weights_in(folder, WEIGHT_FILES)
    if weights is None:
        return f"{folder} has config.json but no weights (model.safetensors)"
    cfg = read_json(folder / "config.json")
    if "architecture" not in cfg and "model_type" not in cfg:
        return f"{folder / 'config.json'} names neither a transformers model_type nor a timm architecture"
    if weights.name == "model.safetensors" and _has_peft_keys(weights):
        return f"{weights} holds unmerged peft weights (lora_A, base_layer, ...), not a plain model"
    return None


def adapter_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a peft adapter, or None if it is one."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    if not (folder / "adapter_config.json").is_file():
        return f"{folder} has no adapter_config.json"
    if _weights_in(folder, ADAPTER_WEIGHT_FILES) is None:
        return f"{folder} has adapter_config.json but no adapter_model.safetensors"
    return None


def peft_key_prefixes() -> tuple[str, ...]:
    """The parameter-name prefix of every peft tuner (``lora_``, ``hada_``, ``ia3_`` ...) from peft's own registry:
    ``PEFT_TYPE_TO_PREFIX_MAPPING``, or each tuner class's ``prefix`` in peft versions before that mapping."""
    import peft.mapping

    shipped = getattr(peft.mapping, "PEFT_TYPE_TO_PREFIX_MAPPING", None)
    tuners = peft.mapping.PEFT_TYPE_TO_TUNER_MAPPING.values()
    prefixes = shipped.values() if shipped else (getattr(tuner, "prefix", "") for tuner in tuners)
    return tuple(sorted({p for p in prefixes if p}))


def is_peft_key(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether a parameter name belongs to an unmerged peft model: a tuner's own weight or a peft wrapper."""
    return any(part in PEFT_WRAPPER_NAMES or part.startswith(prefixes) for part in key.split("."))


def _has_peft_keys(weights: Path) -> bool:
    from safetensors import safe_open

    prefixes = peft_key_prefixes()
    try:
        with safe_open(str(weights), framework="pt") as fh:
            return any(is_peft_key(key, prefixes) for key in fh.keys())
    except Exception as exc:  # unreadable header: say so rather than push a broken file
        raise NoTrainedModelError(f"{weights} is not a readable safetensors file ({exc})") from exc


def _read_metadata(folder: Path) -> tuple[dict, dict, dict]:
    run_info = read_json(folder / "run_info.json") if (folder / "run_info.json").is_file() else {}
    metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    recipe: dict = {}
    if (folder / "recipe.yaml").is_file():
        try:
            loaded = yaml.safe_load((folder / "recipe.yaml").read_text())
        except yaml.YAMLError as exc:
            raise NoTrainedModelError(f"{folder / 'recipe.yaml'} is not valid YAML: {exc}") from exc
        recipe = loaded if isinstance(loaded, dict) else {}
    return run_info, metrics, recipe


def read_run_folder(path: "str | Path") -> RunFolder:
    """Find the model and/or adapter under ``path`` and load whatever run metadata is there."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise NoTrainedModelError(f"{root} is not a folder; pass a training output folder (holding model/) or a saved model folder")

    if (root / "config.json").is_file() or (root / "adapter_config.json").is_file():
        # A model or adapter folder itself; its run's metadata may sit one level up (OUTPUT_DIR/model).
        meta_dir = root if (root / "run_info.json").is_file() or not (root.parent / "run_info.json").is_file() else root.parent
        run = RunFolder(root, None, None, *_read_metadata(meta_dir))
        if (root / "adapter_config.json").is_file():
            problem = adapter_problem(root)
            if problem:
                raise NoTrainedModelError(problem)
            run.adapter_dir = root
            _fill_from_adapter_info(run)
        else:
            problem = model_problem(root)
            if problem:
                raise NoTrainedModelError(problem)
            run.model_dir = root
        return run

    run = RunFolder(root, None, None, *_read_metadata(root))
    for sub, check, attr in (("model", model_problem, "model_dir"), ("adapter", adapter_problem, "adapter_dir")):
        candidate = root / sub
        if candidate.exists():
            problem = check(candidate)
            if problem:
                run.problems.append(problem)
            else:
                setattr(run, attr, candidate)
    _fill_from_adapter_info(run)
    if run.model_dir is None and run.adapter_dir is None:
        found = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]) or "nothing"
        detail = "; ".join(run.problems) if run.problems else "model/ and adapter/ are both missing"
        raise NoTrainedModelError(
            f"{root} holds no trained model: {detail}. Expected model/ (config.json + model.safetensors) "
            f"or adapter/ (adapter_config.json + adapter_model.safetensors), as `vit-transfer train` writes; "
            f"found: {found}"
        )
    return run


def _fill_from_adapter_info(run: RunFolder) -> None:
    """An adapter folder pushed on its own still knows its base model, size and labels."""
    info = run.adapter_info
    for key in RUN_INFO_FROM_ADAPTER:
        if key in info and key not in run.run_info:
            run.run_info[key] = info[key]


# recipe model: keys -> the head spec keys vit_transfer_adapter.json records
HEAD_KEYS = {"head": "kind", "pooling": "pooling", "head_hidden_dim": "hidden_dim", "head_dropout": "dropout"}


def model_with_adapter(run: RunFolder):
    """The training-time base (size, labels, head) rebuilt from the run's metadata, with its adapter loaded.

    The base comes from ``run_info.json`` (or ``vit_transfer_adapter.json``) and the recipe's ``model:``
    section, through ``load_vit_from_config`` as in training; the result is an unmerged ``TransferModel``.
    """
    import dataclasses

    from ..adapters.peft_adapter import load_adapter
    from ..config import ModelConfig, from_dict
    from ..errors import VitTransferError
    from ..models import load_vit_from_config
    from ..errors import HubError

    info, model_cfg = run.run_info, dict(run.recipe.get("model") or {})
    head = run.adapter_info.get("head") or {}  # the head spec the adapter was trained with, when recorded
    source = info.get("base_model") or model_cfg.get("source") or run.adapter_config.get("base_model_name_or_path")
    if not source:
        raise HubError(
            f"the base model of {run.adapter_dir} is unknown (no run_info.json base_model, no recipe "
            "model.source, no base_model_name_or_path)"
        )
    id2label = {int(k): str(v) for k, v in (info.get("id2label") or {}).items()} or None
    try:
        cfg = dataclasses.replace(
            from_dict(ModelConfig, model_cfg, "model"), source=source, attention=None,
            image_size=info.get("image_size") or model_cfg.get("image_size"),
            patch_size=info.get("patch_size") or model_cfg.get("patch_size"),
            ecosystem=info.get("ecosystem") or model_cfg.get("ecosystem"),
            **{k: head[h] for k, h in HEAD_KEYS.items() if head.get(h) is not None},
        )
        num_labels = info.get("num_labels") or (len(id2label) if id2label else None)
        seed = (run.recipe.get("train") or {}).get("seed", 0)  # a pretrained: false base is rebuilt from it
        base = load_vit_from_config(cfg, num_labels, id2label, seed)
    except VitTransferError as exc:
        raise HubError(f"the base model {source!r} of {run.adapter_dir} does not load ({exc})") from exc
    try:
        load_adapter(base, run.adapter_dir)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise HubError(f"the adapter in {run.adapter_dir} does not fit the base model {source!r}: {exc}") from exc
    return base
