"""Package a pretraining run as the built-in checkpoint ``vit-transfer/fashion-vit-tiny``.

    vit-transfer train recipes/pretrain_fashion_mnist.yaml
    vit-transfer train recipes/pretrain_fashion_mnist.yaml PHASE2_OVERRIDES   # see PHASES below
    vit-transfer train recipes/pretrain_fashion_mnist.yaml PHASE3_OVERRIDES
    vit-transfer train recipes/pretrain_fashion_mnist.yaml PHASE4_OVERRIDES
    vit-transfer train recipes/pretrain_fashion_mnist.yaml PHASE5_OVERRIDES
    python tools/ship_builtin.py soup runs/pretrain-fashion-mnist-soup45    # phase 6 starts here
    vit-transfer train recipes/pretrain_fashion_mnist.yaml PHASE6_OVERRIDES
    python tools/ship_builtin.py runs/pretrain-fashion-mnist runs/pretrain-fashion-mnist-phase2 \
        runs/pretrain-fashion-mnist-phase3 runs/pretrain-fashion-mnist-phase4 \
        runs/pretrain-fashion-mnist-phase5 runs/pretrain-fashion-mnist-phase6

``soup DIR`` writes the weighted average named DIR in INTERMEDIATE_SOUPS as a model folder
(``DIR/model``) a later phase can start from. The shipped weights are SOUP: a weighted average of
run folders (phases or intermediate soups), or the last phase alone when SOUP is empty.

Weights are stored in float16 (half the bytes; the config says float32, so every loader upcasts),
the shipped weights are re-evaluated on the full Fashion-MNIST test set, a model card is written,
and the sha256 is recorded in ``vit_transfer/models/builtin.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
NAME = "vit-transfer/fashion-vit-tiny"
# Each later phase continues from the one before (same labels, so the trained head is kept) with a
# fresh, lower cosine cycle and no label smoothing: 8 epochs alone left the model under-fitted (83%),
# 4 more gave 84%. Phase 3 adds 18 epochs at batch 64 (more steps for the same images, measured
# slightly better than 128) with the eager attention kernel and no loader worker (both faster here).
# Phase 3 ended at 88.1% with the held-out accuracy still rising, so phase 4 runs one more, lower
# cosine cycle of 22 epochs.
PHASE2 = ("model.source=runs/pretrain-fashion-mnist/model optim.lr=0.001 optim.weight_decay=0.01 "
          "augment.label_smoothing=0.0 schedule.warmup_steps=100 train.epochs=4 train.batch_size=128 "
          "eval.every_steps=1000 output.dir=runs/pretrain-fashion-mnist-phase2")
PHASE3 = ("model.source=runs/pretrain-fashion-mnist-phase2/model model.attention=eager optim.lr=0.0005 "
          "augment.label_smoothing=0.0 schedule.warmup_steps=200 train.epochs=18 train.batch_size=64 "
          "data.num_workers=0 eval.every_steps=2000 train.checkpoint_every=1000 "
          "output.dir=runs/pretrain-fashion-mnist-phase3")
PHASE4 = ("model.source=runs/pretrain-fashion-mnist-phase3/model model.attention=eager optim.lr=0.0003 "
          "augment.label_smoothing=0.0 schedule.warmup_steps=200 train.epochs=22 train.batch_size=64 "
          "data.num_workers=0 eval.every_steps=2000 train.checkpoint_every=1000 "
          "output.dir=runs/pretrain-fashion-mnist-phase4")
# Phase 4 over-fitted (train loss 0.17, held-out 0.36). Phase 5 adds translations (pad 2 px, crop
# back) and an EMA of the weights for 10 epochs from the shipped, float16-stored phase-4 weights, in
# fp32 on a CPU without bf16 units: 88.4% alone (under-fitted: train loss 0.34), but averaged with
# phase 4 it beats both. The ratio was picked on the 3,000 held-out training images (phase-5 weight
# 0 / 0.3 / 0.5 / 0.7 / 1: 88.6 / 89.1 / 88.5 / 88.2 / 87.8%); the test set was scored once, for 0.3.
PHASE5 = ("model.source=runs/pretrain-fashion-mnist-phase4/model optim.lr=0.0002 augment.crop=random_crop "
          "augment.crop_padding=2 augment.label_smoothing=0.0 schedule.warmup_steps=300 train.epochs=10 "
          "train.batch_size=64 train.ema_decay=0.9995 train.precision=no data.num_workers=0 eval.every_steps=2000 "
          "train.checkpoint_every=1000 output.dir=runs/pretrain-fashion-mnist-phase5")
# Phase 6 starts from the weights shipped after phase 5 (INTERMEDIATE_SOUPS below, float16-stored as
# shipped) with gentler translations (pad 1 px) for 15 epochs, EMA, fp32 on a CPU without bf16 units.
PHASE6 = ("model.source=runs/pretrain-fashion-mnist-soup45/model optim.lr=0.0002 augment.crop=random_crop "
          "augment.crop_padding=1 augment.label_smoothing=0.0 schedule.warmup_steps=300 train.epochs=15 "
          "train.batch_size=64 train.ema_decay=0.9995 train.precision=no data.num_workers=0 eval.every_steps=2000 "
          "train.checkpoint_every=1000 output.dir=runs/pretrain-fashion-mnist-phase6")
PHASES = [  # (what it does, overrides of recipes/pretrain_fashion_mnist.yaml, run folder)
    ("phase 1: 8 epochs, AdamW 2e-3", "", "runs/pretrain-fashion-mnist"),
    ("phase 2: 4 more epochs, AdamW 1e-3", PHASE2, "runs/pretrain-fashion-mnist-phase2"),
    ("phase 3: 18 more epochs, AdamW 5e-4", PHASE3, "runs/pretrain-fashion-mnist-phase3"),
    ("phase 4: 22 more epochs, AdamW 3e-4", PHASE4, "runs/pretrain-fashion-mnist-phase4"),
    ("phase 5: 10 more epochs from phase 4, translations, EMA, AdamW 2e-4", PHASE5, "runs/pretrain-fashion-mnist-phase5"),
    ("phase 6: 15 more epochs from the phase-4/5 soup, 1-px translations, EMA, AdamW 2e-4", PHASE6,
     "runs/pretrain-fashion-mnist-phase6"),
]
# Weighted averages written as model folders by ``soup DIR`` (run -> weight), for a phase to start from.
INTERMEDIATE_SOUPS = {
    "runs/pretrain-fashion-mnist-soup45": {"runs/pretrain-fashion-mnist-phase4": 0.7, "runs/pretrain-fashion-mnist-phase5": 0.3},
}
# Phase 6 ships alone: 90.2% test (scored once, by the training loop), 88.2% held out. Averaging it with its
# start did not help held out (start weight 1 / 0.7 / 0.5 / 0.3: 89.1 / 88.6 / 88.5 / 88.4%; the start's
# 89.1% is biased up, its own ratio was picked on those images).
SOUP: dict[str, float] = {}  # run -> weight; empty: the last phase's weights


def soup(weights_by_run: dict[str, float]) -> dict[str, torch.Tensor]:
    """The weighted average of several runs' ``model/model.safetensors`` (same keys), in float32."""
    total = sum(weights_by_run.values())
    average: dict[str, torch.Tensor] = {}
    for run, weight in weights_by_run.items():
        for key, tensor in load_file(str(Path(run) / "model" / "model.safetensors")).items():
            average[key] = average.get(key, 0) + tensor.float() * (weight / total)
    return average


def write_float16(state: dict[str, torch.Tensor], folder: Path) -> dict:
    """Store ``state`` in float16 in ``folder/model.safetensors``; the config says float32 so loaders upcast."""
    save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = "float32"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def write_intermediate_soup(out: str) -> None:
    """``soup DIR``: INTERMEDIATE_SOUPS[DIR] as a model folder ``DIR/model``, stored as shipped (float16)."""
    if out not in INTERMEDIATE_SOUPS:
        sys.exit(f"unknown soup {out!r}; INTERMEDIATE_SOUPS has {sorted(INTERMEDIATE_SOUPS)}")
    weights = INTERMEDIATE_SOUPS[out]
    folder = Path(out) / "model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(Path(list(weights)[-1]) / "model", folder)
    write_float16(soup(weights), folder)
    print(f"wrote {folder}: " + " + ".join(f"{w} x {run}" for run, w in weights.items()))


FOLDER = "fashion-vit-tiny"


def evaluate(folder: Path) -> tuple[float, int]:
    from vit_transfer import load_vit
    from vit_transfer.data import DataConfig, build_transform, load_image_datasets, make_dataloader

    model = load_vit(folder).eval()
    data = load_image_datasets(DataConfig(source="fashion-mnist", eval_split="none", num_workers=0))
    loader = make_dataloader(data.test, build_transform(model.preprocessing, train=False), 500, shuffle=False)
    correct = total = 0
    with torch.inference_mode():
        for batch in loader:
            correct += (model(batch["pixel_values"]).argmax(-1) == batch["labels"]).sum().item()
            total += len(batch["labels"])
    return correct / total, total


def main(run_dirs: list[str]) -> None:
    from vit_transfer.models.builtin import sha256_file

    phases = [json.loads((Path(d) / "metrics.json").read_text()) for d in run_dirs]
    run = Path(run_dirs[-1])  # the last phase holds the final model
    # Totals over all phases; each phase's own metrics (the last one's test_top1 is not the shipped one's) below.
    metrics = {key: sum(p.get(key, 0) for p in phases) for key in ("seconds", "steps", "images_seen")}
    metrics.update(trainable_parameters=phases[-1].get("trainable_parameters", 0), phases=phases)
    dest = ROOT / "vit_transfer" / "assets" / FOLDER
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / FOLDER
        shutil.copytree(run / "model", staged)
        weights = staged / "model.safetensors"
        # One decision, for the weights and the card: soup only when shipping the runs SOUP names.
        souped = SOUP if SOUP and set(SOUP) <= set(run_dirs) | set(INTERMEDIATE_SOUPS) else {}
        config = write_float16(soup(souped) if souped else load_file(str(weights)), staged)
        start = time.perf_counter()
        accuracy, n = evaluate(staged)
        print(f"shipped (float16-stored) weights: {accuracy:.4f} top-1 on {n} Fashion-MNIST test images "
              f"({time.perf_counter() - start:.0f}s)")
        (staged / "README.md").write_text(model_card(metrics, accuracy, n, config, souped))
        shipped = {"shipped_test_top1": accuracy, "shipped_test_examples": n, "soup": souped}
        (staged / "pretraining_metrics.json").write_text(json.dumps({**shipped, **metrics}, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(staged, dest)
    digest = sha256_file(dest / "model.safetensors")
    builtin = ROOT / "vit_transfer" / "models" / "builtin.py"
    text = builtin.read_text()
    entry = f'BUILTIN_MODELS: dict[str, tuple[str, str]] = {{\n    "{NAME}": ("{FOLDER}", "{digest}"),\n}}'
    text = re.sub(r"BUILTIN_MODELS: dict\[str, tuple\[str, str\]\] = \{[^}]*\}", entry, text)
    builtin.write_text(text)
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"wrote {dest} ({size / 2**20:.1f} MiB), sha256 {digest}")


def precision_text(phases: list[dict]) -> str:
    """``phases 1-4 bf16 autocast, phase 5 fp32``: runs of equal precision grouped, in order."""
    groups: list[list] = []  # [first phase, last phase, precision]
    for number, phase in enumerate(phases, 1):
        precision = phase.get("precision") or "no"
        if groups and groups[-1][2] == precision:
            groups[-1][1] = number
        else:
            groups.append([number, number, precision])
    spans = [(f"phase {a}" if a == b else f"phases {a}-{b}") + (" fp32" if p == "no" else f" {p} autocast")
             for a, b, p in groups]
    return ", ".join(spans)


def describe(run: str) -> str:
    """``phase 4``, or ``(0.7 x phase 4 + 0.3 x phase 5)`` for an intermediate soup."""
    if run in INTERMEDIATE_SOUPS:
        return "(" + " + ".join(f"{w} x {describe(r)}" for r, w in INTERMEDIATE_SOUPS[run].items()) + ")"
    return next(what.split(":")[0] for what, _, d in PHASES if d == run)


def soup_text(souped: dict[str, float]) -> str:
    if not souped:
        return ""
    parts = " + ".join(f"{w} x {describe(run)}" for run, w in souped.items())
    return (f"The shipped weights are a weighted average of phases' weights ({parts}), the ratios picked on "
            "the held-out images (see `SOUP` in `tools/ship_builtin.py`); the test set was scored once per shipped "
            "version.\n\n")


def model_card(metrics: dict, accuracy: float, n: int, config: dict,
               souped: "dict[str, float] | None" = None) -> str:
    minutes = metrics.get("seconds", 0) / 60
    labels = ", ".join(config["id2label"][str(i)] for i in range(len(config["id2label"])))
    params = metrics.get("trainable_parameters", 0)
    run = PHASES[:len(metrics["phases"])]  # the phases this checkpoint went through, in order
    commands = []
    for what, overrides, _ in run:
        commands += [f"python tools/ship_builtin.py soup {s}" for s in INTERMEDIATE_SOUPS if f"model.source={s}/model" in overrides.split()]
        commands.append(f"vit-transfer train recipes/pretrain_fashion_mnist.yaml {overrides}".rstrip() + f"   # {what}")
    commands.append("python tools/ship_builtin.py " + " ".join(d for _, _, d in run))
    reproduce = "\n".join(commands)
    return f"""---
license: mit
library_name: transformers
pipeline_tag: image-classification
datasets:
- fashion_mnist
tags:
- vit-transfer
- vision-transformer
model-index:
- name: fashion-vit-tiny
  results:
  - task:
      type: image-classification
    dataset:
      name: Fashion-MNIST
      type: fashion_mnist
      split: test
    metrics:
    - type: accuracy
      value: {accuracy:.4f}
      name: top-1 accuracy
---

# vit-transfer/fashion-vit-tiny

A small Vision Transformer pretrained **from scratch** on Fashion-MNIST with vit-transfer's own
training loop. It ships inside the `vit-transfer` package as the offline default model: the
quickstart transfers it to scikit-learn's handwritten digits at a new resolution.

| | |
|---|---|
| architecture | ViT (transformers `ViTForImageClassification`), {config['num_hidden_layers']} blocks, width {config['hidden_size']}, {config['num_attention_heads']} heads, MLP {config['intermediate_size']} |
| input | {config['image_size']}x{config['image_size']} RGB (grey replicated), patch {config['patch_size']} (a {config['image_size'] // config['patch_size']}x{config['image_size'] // config['patch_size']} grid), mean/std 0.5 |
| parameters | {params:,} |
| labels | {labels} |
| **Fashion-MNIST test top-1** | **{100 * accuracy:.2f}%** ({n:,} images, the shipped float16-stored weights) |
| training | {len(metrics['phases'])} phases, {metrics.get('steps')} steps, {metrics.get('images_seen', 0):,} images, {minutes:.0f} min on 2-core CPUs ({precision_text(metrics['phases'])}) |
| data | Fashion-MNIST (Debian package `dataset-fashion-mnist`, MIT licence): 57,000 train, 3,000 held out for evaluation |

Reproduce:

```bash
apt-get install dataset-fashion-mnist
{reproduce}
```

{soup_text(souped or {})}Phase test accuracies: {", ".join(f"{100 * p.get('test_top1', 0):.1f}%" for p in metrics['phases'])}.

Load it (no network needed):

```python
from vit_transfer import load_vit
model = load_vit("vit-transfer/fashion-vit-tiny", image_size=32, num_labels=10)  # resized to an 8x8 grid
```

The weights are stored in float16 to halve the package size; `config.json` says float32, so
`from_pretrained` and `load_vit` upcast them on load. The file's sha256 is checked on every load.
"""


if __name__ == "__main__":
    if sys.argv[1:2] == ["soup"] and len(sys.argv) == 3:
        write_intermediate_soup(sys.argv[2])
    else:
        main(sys.argv[1:] or [d for _, _, d in PHASES])
