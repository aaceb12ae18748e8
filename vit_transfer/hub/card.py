"""The model card (``README.md``): what was trained, from what, how well, and how to load it.

Metadata goes through ``huggingface_hub.ModelCardData`` so the Hub reads ``library_name``,
``base_model``, tags and ``model-index`` (one ``EvalResult`` per split and metric); the body is
written from the run folder and degrades to what the model folder alone can tell.
Every string is scrubbed of tokens before it is written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from ..models.base import to_pair
from ..runs.folder import RunFolder
from .secrets import REDACTED, scrub, scrub_data
from .staging import StagedModel

SECRET_KEY = re.compile(r"token|password|secret|api_key", re.IGNORECASE)
WHAT_TEXT = {
    "model": "the full fine-tuned model",
    "merged": "the full model with the peft adapter merged into its weights",
    "adapter": "the peft adapter alone (load it on top of the base model, see below)",
}
# adapter_config.json keys that say nothing about the method (the table shows the rest)
ADAPTER_CONFIG_NOISE = {"peft_type", "base_model_name_or_path", "revision", "task_type", "inference_mode",
                        "auto_mapping", "peft_version", "target_modules", "modules_to_save"}
# Datasets that vit-transfer reads from local files but that have a familiar name.
KNOWN_DATASETS = {
    "sklearn:digits": ("sklearn-digits", "scikit-learn digits"),
    "digits": ("sklearn-digits", "scikit-learn digits"),
    "fashion-mnist": ("fashion_mnist", "Fashion-MNIST"),
}
MAX_LABELS_SHOWN = 20


def build_model_card(run: RunFolder, staged: StagedModel, repo_id: str, token: str | None = None):
    """A ``huggingface_hub.ModelCard`` for ``staged``, from whatever metadata ``run`` holds."""
    from huggingface_hub import ModelCard, ModelCardData

    info = scrub_data(run.run_info, token)
    recipe = _redact_secrets(scrub_data(run.recipe, token))
    metrics = run.metrics
    base_id = hub_model_id(info.get("base_model") or (recipe.get("model") or {}).get("source"), staged.ecosystem)
    dataset = describe_dataset(info.get("dataset") or (recipe.get("data") or {}).get("source"))
    name = repo_id.split("/")[-1]
    eval_results = eval_results_from_metrics(metrics, dataset, recipe)

    tags = ["vit-transfer", "image-classification", "vision-transformer", "transfer-learning",
            LIBRARY_TAG[staged.ecosystem]]
    peft_type = str(run.adapter_config.get("peft_type") or _method_peft_type(run.method) or "").lower()
    if staged.library_name == "peft" or peft_type:
        tags += ["peft"] + ([peft_type] if peft_type else [])
    data = ModelCardData(
        library_name=staged.library_name,
        pipeline_tag="image-classification",
        base_model=base_id,
        datasets=[dataset["id"]] if dataset and dataset["hub"] else None,
        license=_license(staged),
        tags=tags,
        model_name=name,
        eval_results=eval_results or None,
    )
    body = render_body(run, staged, repo_id, info, recipe, metrics, base_id, dataset)
    content = f"---\n{data.to_yaml()}\n---\n\n{body}"
    return ModelCard(scrub(content, token))


LIBRARY_TAG = {"hf": "transformers", "timm": "timm"}


# --- metadata helpers -----------------------------------------------------------------------
def hub_model_id(source: str | None, ecosystem: str | None = None) -> str | None:
    """The Hub id a model source stands for, or None for local paths and built-in checkpoints."""
    if not source:
        return None
    text = str(source)
    for prefix in ("hf-hub:", "hf_hub:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if text.startswith(("local-dir:", ".", "/", "~")) or Path(text).expanduser().exists():
        return None
    from ..models.builtin import ALIASES, BUILTIN_MODELS

    if text in BUILTIN_MODELS or text in ALIASES:
        return None
    if "/" in text:
        return text if is_repo_id(text) else None
    if ecosystem == "timm":  # a timm name: its pretrained weights live in a timm/ repo
        try:
            from timm.models import get_pretrained_cfg

            cfg = get_pretrained_cfg(text)
            return getattr(cfg, "hf_hub_id", None) or None
        except Exception:
            return None
    return None


def is_repo_id(text: str) -> bool:
    """Whether ``text`` is a repo id the Hub accepts (``huggingface_hub``'s own ``validate_repo_id``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return bool(text)


def describe_dataset(source: str | None) -> dict | None:
    """``{"id", "name", "hub"}`` for a data source: Hub ids stay ids, local paths become their folder name."""
    if not source:
        return None
    text = str(source)
    if text in KNOWN_DATASETS:
        slug, pretty = KNOWN_DATASETS[text]
        return {"id": slug, "name": pretty, "hub": False}
    path = Path(text).expanduser()
    if text.startswith((".", "/", "~")) or path.exists() or ":" in text:
        kind = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix, "imagefolder")
        return {"id": kind, "name": path.name or text, "hub": False}
    if is_repo_id(text):
        return {"id": text, "name": text, "hub": True}
    return {"id": "custom", "name": text, "hub": False}


def eval_results_from_metrics(metrics: dict, dataset: dict | None, recipe: dict) -> list:
    """Top-1 / top-5 accuracy per split as ``EvalResult``s (values exactly as in metrics.json)."""
    from huggingface_hub import EvalResult

    if not dataset:
        dataset = {"id": "custom", "name": "custom dataset", "hub": False}
    data_cfg = recipe.get("data") or {}
    splits = (("eval", str(data_cfg.get("eval_split") or "validation")), ("test", str(data_cfg.get("test_split") or "test")))
    results = []
    for prefix, split in splits:
        for k in (1, 5):
            value = metrics.get(f"{prefix}_top{k}")
            if not _finite(value):
                continue
            results.append(EvalResult(
                task_type="image-classification", task_name="Image Classification",
                dataset_type=dataset["id"], dataset_name=dataset["name"], dataset_split=split,
                metric_type="accuracy", metric_name=f"Top-{k} accuracy", metric_value=value,
                metric_args={"top_k": k},
            ))
    return results


def _license(staged: StagedModel) -> str | None:
    if staged.ecosystem != "timm" or staged.what == "adapter":
        return None
    import json

    cfg = json.loads((staged.folder / "config.json").read_text())
    return (cfg.get("pretrained_cfg") or {}).get("license")


def _redact_secrets(value: Any, key: str = "") -> Any:
    """Values under keys like ``hub_token`` or ``password`` never reach the card, whatever they look like."""
    if isinstance(value, dict):
        return {k: _redact_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_secrets(v, key) for v in value]
    if SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    return value


# --- body ---------------------------------------------------------------------------------
def _size(pair) -> str:
    return f"{int(pair[0])}x{int(pair[1])}" if pair else "?"


def _grid(size, patch) -> str | None:
    if not size or not patch:
        return None
    return f"{int(size[0]) // int(patch[0])}x{int(size[1]) // int(patch[1])}"


def resolution_text(info: dict, recipe: dict, staged: StagedModel) -> str:
    """``224x224 -> 384x384 (patch 16x16, grid 14x14 -> 24x24)``, or just the size when that is all we know."""
    new = info.get("image_size") or staged.image_size
    patch = info.get("patch_size") or staged.patch_size
    old = info.get("original_image_size")
    patch = _pair_or_none(patch)
    old_patch = _pair_or_none(info.get("original_patch_size")) or (
        patch if (recipe.get("model") or {}).get("patch_size") is None else None
    )
    if not new:
        return "unknown"
    if not old or list(old) == list(new) and old_patch == patch:
        grid = _grid(new, patch)
        detail = f" (patch {_size(patch)}, grid {grid})" if grid else ""
        return f"{_size(new)}{detail}, unchanged from the base model" if old else f"{_size(new)}{detail}"
    old_grid, new_grid = _grid(old, old_patch), _grid(new, patch)
    detail = []
    if patch:
        detail.append(f"patch {_size(old_patch)} -> {_size(patch)}" if old_patch and old_patch != patch else f"patch {_size(patch)}")
    if new_grid:
        detail.append(f"grid {old_grid} -> {new_grid}" if old_grid else f"grid {new_grid}")
    text = f"{_size(old)} -> {_size(new)}"
    if detail:
        text += f" ({', '.join(detail)})"
    return text + "; position embeddings interpolated"


def _pair_or_none(value) -> tuple[int, int] | None:
    return None if value is None else to_pair(value)


def _labels_text(staged: StagedModel, info: dict) -> str:
    id2label = staged.id2label or {int(k): str(v) for k, v in (info.get("id2label") or {}).items()}
    count = staged.num_labels or info.get("num_labels") or len(id2label)
    if not id2label:
        return str(count) if count else "unknown"
    names = [id2label[k] for k in sorted(id2label)][:MAX_LABELS_SHOWN]
    more = f", ... ({len(id2label) - MAX_LABELS_SHOWN} more)" if len(id2label) > MAX_LABELS_SHOWN else ""
    return f"{count}: " + ", ".join(f"`{n}`" for n in names) + more


def _head_text(staged: StagedModel, recipe: dict) -> str:
    m = recipe.get("model") or {}
    spec = staged.custom_head or {}
    if not m and not spec:
        return "linear classifier"
    kind = spec.get("kind") or m.get("head") or "linear"
    pooling = spec.get("pooling") or m.get("pooling") or "the model's native pooling"
    text = f"new {kind} head on {pooling}"
    if spec.get("hidden_dim") or m.get("head_hidden_dim"):
        text += f", hidden {spec.get('hidden_dim') or m.get('head_hidden_dim')}"
    if spec.get("dropout") or m.get("head_dropout"):
        text += f", dropout {spec.get('dropout') or m.get('head_dropout')}"
    if m.get("head_init"):
        text += f", {m['head_init']} init"
    return text


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows if v not in (None, "")]
    return "\n".join(lines)


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            rows += _flatten(value, name)
        elif value is not None:
            rows.append((f"`{name}`", f"`{value}`"))
    return rows


def _finite(value) -> bool:
    """A number worth reporting: runs without an eval split write NaN (or nothing)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt_metric(value, digits: str = ".4f") -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, float):
        return format(value, digits)
    return "" if value is None else str(value)


def render_body(run, staged, repo_id, info, recipe, metrics, base_id, dataset) -> str:
    name = repo_id.split("/")[-1]
    base_text = info.get("base_model") or (recipe.get("model") or {}).get("source")
    base_link = f"[{base_id}](https://huggingface.co/{base_id})" if base_id else (f"`{base_text}`" if base_text else "a pretrained ViT")
    data_text = f"**{dataset['name']}**" if dataset else "a custom dataset"
    parts = [
        f"# {name}",
        f"A Vision Transformer fine-tuned for image classification on {data_text}, starting from {base_link}, "
        f"with vit-transfer. This repository holds "
        f"{WHAT_TEXT[staged.what]}, ready for {_loader_name(staged)}.",
    ]
    if not run.run_info and not run.metrics:
        parts.append("_No run metadata (run_info.json, metrics.json) was found next to the model, so this card "
                     "describes the saved model only._")
    method = run.method or info.get("method")
    details = [
        ("Base model", base_link if base_text or base_id else None),
        ("Library", f"{LIBRARY_TAG[staged.ecosystem]}" + (f" (`{staged.architecture}`)" if staged.architecture else "")),
        ("Training method", method_text(method, run.adapter_config, recipe, returned=metrics.get("returned"))),
        ("Dataset", dataset["name"] if dataset else None),
        ("Input resolution", resolution_text(info, recipe, staged)),
        ("Classes", _labels_text(staged, info)),
        ("Head", _head_text(staged, recipe)),
    ]
    parts += ["## Model details", _table(details)]
    note = _method_note(method) if metrics.get("returned") != "start" else ""  # the start is no fine-tune
    if note:
        parts.append(note)
    stock = (metrics.get("auto") or {}).get("stock_loaders")  # vit-transfer auto returned a multi-block probe
    if stock:
        parts.append(stock)
    parts += _results_section(metrics, recipe)
    parts += _lora_section(run)
    parts += _hyperparameter_section(recipe, metrics)
    parts += ["## How to use", usage_snippet(staged, repo_id, info, recipe)]
    parts += _reproduce_section(info, recipe)
    parts += _versions_section(info)
    return "\n\n".join(parts) + "\n"


def _loader_name(staged: StagedModel) -> str:
    if staged.what == "adapter":
        return "peft's `PeftModel.from_pretrained`"
    if staged.custom_head:
        return "`vit_transfer.load_vit`"
    if staged.ecosystem == "timm":
        return '`timm.create_model("hf-hub:...", pretrained=True)`'
    return '`AutoModelForImageClassification` and `pipeline("image-classification")`'


def _results_section(metrics: dict, recipe: dict) -> list[str]:
    data_cfg = recipe.get("data") or {}
    rows = []
    for prefix, split in (("eval", data_cfg.get("eval_split") or "validation"), ("test", data_cfg.get("test_split") or "test")):
        if not _finite(metrics.get(f"{prefix}_top1")):
            continue
        rows.append(f"| {split} | {_fmt_metric(metrics.get(f'{prefix}_top1'))} | {_fmt_metric(metrics.get(f'{prefix}_top5'))} "
                    f"| {_fmt_metric(metrics.get(f'{prefix}_loss'))} |")
    if not rows:
        return []
    return ["## Results", "| Split | Top-1 accuracy | Top-5 accuracy | Loss |\n|---|---|---|---|\n" + "\n".join(rows)]


def _method_peft_type(method: str | None) -> str | None:
    """The peft tuner a method always uses (LoRA's), for a card without the adapter's own config."""
    from ..methods import METHODS

    return METHODS[method].peft_type if method in METHODS else None


def _method_note(method: str | None) -> str:
    from ..methods import METHODS

    return METHODS[method].card_note() if method in METHODS else ""


def method_text(method: str | None, adapter_config: dict, recipe: dict, returned: "str | None" = None) -> str | None:
    """The method's name as the method itself words it (``Method.card_title``), and LP-FT when it applies.

    ``returned="start"`` (``metrics.json``: ``train.keep_start_within_noise`` kept the run's start): the saved model
    is the start, for LP-FT the linear probe on the frozen backbone, not the fine-tune."""
    from ..methods import METHODS

    if not method:
        return None
    if method == "probe":  # vit-transfer auto's returned probe
        return "linear probe on the frozen backbone (chosen on validation by vit-transfer auto)"
    if returned == "start":
        start = ("the linear probe on the frozen backbone (LP-FT's start)"
                 if (recipe.get("model") or {}).get("head_init") == "probe" else "the run's starting weights")
        return (f"{start}: the {method} fine-tune was not clearly better on validation "
                "(train.keep_start_within_noise), so the start was saved")
    text = METHODS[method].card_title(adapter_config) if method in METHODS else method
    if (recipe.get("model") or {}).get("head_init") == "probe":
        text += ", head started from the linear probe (LP-FT)"
    return text


def _lora_section(run: RunFolder) -> list[str]:
    cfg = run.adapter_config
    if not cfg:
        return []
    if cfg.get("peft_type", "LORA") != "LORA":
        rows = [("peft type", f"`{cfg['peft_type']}`")]
        rows += [(f"`{k}`", f"`{v}`") for k, v in sorted(cfg.items())
                 if k not in ADAPTER_CONFIG_NOISE and v not in (None, False, [], {}, "") and not isinstance(v, dict)]
        rows += [("Target modules", ", ".join(f"`{m}`" for m in _as_list(cfg.get("target_modules")))),
                 ("Trained in full (`modules_to_save`)", ", ".join(f"`{m}`" for m in _as_list(cfg.get("modules_to_save"))))]
        return ["## Adapter settings", _table(rows)]
    rows = [
        ("Rank `r`", cfg.get("r")),
        ("`lora_alpha`", cfg.get("lora_alpha")),
        ("`lora_dropout`", cfg.get("lora_dropout")),
        ("Target modules", ", ".join(f"`{m}`" for m in _as_list(cfg.get("target_modules")))),
        ("Trained in full (`modules_to_save`)", ", ".join(f"`{m}`" for m in _as_list(cfg.get("modules_to_save")))),
        ("DoRA", cfg.get("use_dora") or None),
        ("rsLoRA", cfg.get("use_rslora") or None),
    ]
    return ["## LoRA settings", _table(rows)]


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else sorted(value)


def _hyperparameter_section(recipe: dict, metrics: dict) -> list[str]:
    rows = [row for key, section in recipe.items() if key not in ("model", "data", "output") and isinstance(section, dict)
            for row in _flatten(section, str(key))]
    rows += [(f"`{k}`", f"`{v}`") for k, v in recipe.items() if not isinstance(v, dict) and v is not None]
    run_rows = [(label, _fmt_metric(metrics.get(key), ".4g")) for key, label in (
        ("steps", "Optimizer steps"), ("train_loss", "Final train loss"), ("seconds", "Training time (s)"),
        ("images_per_second", "Throughput (images/s)"), ("trainable_parameters", "Trainable parameters"),
        ("trainable_percent", "Trainable share (%)"), ("probe_val_top1", "LP-FT: the starting probe's validation top-1"))]
    out = []
    if rows:
        out += ["## Training hyper-parameters", _table(rows)]
    if any(v for _, v in run_rows):
        out += ["### Training run" if rows else "## Training run", _table(run_rows)]
    return out


def _reproduce_section(info: dict, recipe: dict) -> list[str]:
    out = []
    if info.get("command"):
        out += ["## Reproduce", "```bash\n" + str(info["command"]) + "\n```"]
    if recipe:
        if not out:
            out.append("## Reproduce")
        text = yaml.safe_dump(recipe, sort_keys=False).strip()
        out.append("<details><summary>recipe.yaml</summary>\n\n```yaml\n" + text + "\n```\n\n</details>")
    return out


def _versions_section(info: dict) -> list[str]:
    versions = info.get("versions")
    note = ""
    if not versions:
        versions, note = current_versions(), " (installed when this card was written; the run recorded none)"
    lines = [f"- {name} {version}" for name, version in versions.items() if version]
    return ["## Framework versions" + note, "\n".join(lines)] if lines else []


def current_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("vit-transfer", "torch", "transformers", "timm", "peft", "huggingface_hub"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


# --- usage snippets -----------------------------------------------------------------------
def usage_snippet(staged: StagedModel, repo_id: str, info: dict, recipe: dict) -> str:
    """Code that loads this repo with the right stock loader (peft over vit-transfer for adapters)."""
    if staged.what == "adapter":
        return _adapter_snippet(staged, repo_id, info, recipe)
    if staged.custom_head:
        # timm's hf-hub loader cannot place this head, so a timm model is loaded from a local snapshot
        fetch = "from huggingface_hub import snapshot_download\n" if staged.ecosystem == "timm" else ""
        source = f'"{repo_id}"' if staged.ecosystem == "hf" else f'snapshot_download("{repo_id}")'
        return (
            "This model uses vit-transfer parts (" + ", ".join(f"{k}={v}" for k, v in staged.custom_head.items())
            + ") that the stock loader cannot rebuild; load it with vit-transfer:\n\n```python\n"
            f"import torch\n{fetch}from vit_transfer import load_vit\n\n"
            f"model = load_vit({source}).eval()\n"
            "# pixel_values: (B, 3, H, W) normalised with model.preprocessing.mean / .std at model.image_size\n"
            "with torch.no_grad():\n    logits = model(pixel_values)\n```"
        )
    if staged.ecosystem == "timm":
        return (
            "```python\nimport timm\nimport torch\nfrom PIL import Image\n\n"
            f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()\n'
            "config = timm.data.resolve_data_config({}, model=model)\n"
            "transform = timm.data.create_transform(**config)\n"
            'image = Image.open("image.jpg").convert("RGB")\n'
            "with torch.no_grad():\n    logits = model(transform(image).unsqueeze(0))\n"
            "labels = model.pretrained_cfg.get(\"label_names\")\n"
            "print(logits.softmax(-1).topk(3))\n```"
        )
    return (
        "```python\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("image-classification", model="{repo_id}")\n'
        'print(classifier("image.jpg"))\n```\n\nor, for the logits:\n\n'
        "```python\nimport torch\nfrom PIL import Image\n"
        "from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
        f'processor = AutoImageProcessor.from_pretrained("{repo_id}")\n'
        f'model = AutoModelForImageClassification.from_pretrained("{repo_id}").eval()\n'
        'inputs = processor(Image.open("image.jpg").convert("RGB"), return_tensors="pt")\n'
        "with torch.no_grad():\n    logits = model(**inputs).logits\n"
        "print(model.config.id2label[logits.argmax(-1).item()])\n```"
    )


def _adapter_snippet(staged: StagedModel, repo_id: str, info: dict, recipe: dict) -> str:
    m = recipe.get("model") or {}
    base = info.get("base_model") or m.get("source") or "BASE_MODEL"
    args = [f'"{base}"']
    if staged.image_size:
        args.append(f"image_size={tuple(staged.image_size)}")
    if info.get("patch_size") and m.get("patch_size"):
        args.append(f"patch_size={int(_pair_or_none(info['patch_size'])[0])}")
    if staged.num_labels:
        args.append(f"num_labels={staged.num_labels}")
    for key in ("head", "pooling", "head_hidden_dim", "head_dropout"):
        if m.get(key) not in (None, "linear", 0, 0.0):
            args.append(f"{key}={m[key]!r}")
    return (
        "The adapter sits on the base model after vit-transfer resized it and attached the new head "
        "(the head's trained weights are in the adapter, `modules_to_save`):\n\n"
        "```python\nimport torch\nfrom peft import PeftModel\nfrom vit_transfer import load_vit\n\n"
        f"model = load_vit({', '.join(args)})\n"
        f'model.model = PeftModel.from_pretrained(model.model, "{repo_id}").merge_and_unload()\n'
        "model.eval()\n"
        "# pixel_values: (B, 3, H, W) normalised with model.preprocessing.mean / .std at model.image_size\n"
        "with torch.no_grad():\n    logits = model(pixel_values)\n```"
    )
