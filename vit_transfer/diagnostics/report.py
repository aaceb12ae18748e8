"""``inspect_model``: the three pictures and every number behind them, for one model or two (``inspect.json``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from .attention_distance import mean_attention_distance, uniform_attention_distance
from .capture import capture_attention
from .pos_embed_similarity import locality, model_pos_embed_similarity, pos_embed_similarity, resized_table
from .rollout import Rollout

PREFIX_CHOICE = "prefix tokens excluded as queries and keys; each query row renormalised over patch keys"


def find_images(paths: "Sequence[str | Path]") -> list[Path]:
    """Image files named directly or found (recursively, sorted) under the folders named."""
    from ..data.images import image_files

    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [Path(f) for f in image_files(path)]
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"--images {path}: no such file or folder")
    if paths and not found:
        raise DataError(f"no image files under {', '.join(map(str, paths))}")
    return found


def model_summary(model) -> dict:
    return {
        "source": model.source, "ecosystem": model.ecosystem, "image_size": list(model.image_size),
        "patch_size": list(model.patch_size), "grid": list(model.grid_size),
        "num_prefix_tokens": model.num_prefix_tokens, "num_pos_prefix_tokens": model.num_pos_prefix_tokens,
    }


def _display(pixels: torch.Tensor, preprocessing) -> np.ndarray:
    """``(3, H, W)`` model input back to an ``(H, W, 3)`` uint8 picture (uint8 input is shown as it is)."""
    if pixels.dtype == torch.uint8:
        return pixels.permute(1, 2, 0).cpu().numpy()
    mean = torch.tensor(preprocessing.mean).view(-1, 1, 1)
    std = torch.tensor(preprocessing.std).view(-1, 1, 1)
    picture = (pixels.float().cpu() * std + mean).clamp(0, 1)
    return (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def measure_attention(model, images: Sequence, batch_size: int = 8, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, query: str = "cls", label: str = "model",
                      keep_pictures: int | None = None) -> dict:
    """Per-image attention distances ``(blocks, images, heads)``, rollout maps ``(images, gh, gw)``, and the
    first ``keep_pictures`` (all by default) model inputs as ``(H, W, 3)`` uint8 pictures for overlays."""
    from tqdm.auto import tqdm

    from ..data import build_transform

    transform = build_transform(model.preprocessing, train=False, normalize=False)  # uint8: the model normalises
    device = next(model.parameters()).device
    distances, maps, pictures = [], [], []
    with tqdm(total=len(images), desc=f"inspect {label}", unit="image") as bar:
        for start in range(0, len(images), batch_size):
            batch = torch.stack([transform(image) for image in images[start:start + batch_size]])
            rollout = Rollout(model.num_prefix_tokens, model.grid_size, head_fusion, discard_ratio, query)
            per_block: list[torch.Tensor] = []

            def consume(block: int, attention: torch.Tensor) -> None:  # one block's maps at a time
                per_block.append(mean_attention_distance(attention, model.grid_size, model.patch_size,
                                                         model.num_prefix_tokens).cpu())
                rollout.add(attention)

            capture_attention(model, batch.to(device), consume=consume)
            distances.append(torch.stack(per_block))
            maps.append(rollout.maps().cpu())
            room = len(batch) if keep_pictures is None else max(0, keep_pictures - len(pictures))
            pictures += [_display(p, model.preprocessing) for p in batch[:room]]
            bar.update(len(batch))
    return {"distances": torch.cat(distances, dim=1), "rollout": torch.cat(maps), "pictures": pictures}


NO_TABLE = "no absolute position table (a relative position bias in each block): no similarity to draw"


def _similarity_section(model, image_size, interpolation: str) -> tuple[dict, dict]:
    if model.pos_embed is None:  # said in inspect.json and on a blank panel, rather than a crash
        gh, gw = model.grid_size
        return ({"grid": [gh, gw], "absent": NO_TABLE, "locality": None, "similarity": None},
                {f"{gh}x{gw}: no absolute position table": np.full((gh, gw, gh, gw), np.nan)})
    own = model_pos_embed_similarity(model)
    section = {"grid": list(model.grid_size), "locality": locality(own), "similarity": own.tolist()}
    panels = {f"{model.grid_size[0]}x{model.grid_size[1]} table": own.numpy()}
    if image_size is not None:
        table, grid = resized_table(model, image_size, interpolation)
        resized = pos_embed_similarity(table, grid, model.num_pos_prefix_tokens)
        section["resized"] = {"image_size": list(np.broadcast_to(image_size, 2).tolist()), "grid": list(grid),
                              "interpolation": interpolation, "locality": locality(resized),
                              "similarity": resized.tolist()}
        panels[f"resized to {grid[0]}x{grid[1]} ({interpolation})"] = resized.numpy()
    return section, panels


def inspect_model(
    model,
    images: Sequence = (),
    output_dir: "str | Path" = "inspect-output",
    image_size: "int | tuple[int, int] | None" = None,
    compare=None,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    query: str = "cls",
    batch_size: int = 8,
    interpolation: str = "bicubic",
    image_names: Sequence[str] | None = None,
    labels: Sequence[str] = ("model", "compare"),
    rollout_figure_images: int = 8,
) -> dict:
    """Write ``attention_distance.png``, ``pos_embed_similarity.png``, ``rollout*.png`` and ``inspect.json``.

    ``images`` are PIL images (attention needs some; without them only the position table is inspected),
    prepared with each model's own eval transform. ``image_size`` adds the resized table beside the
    model's own and measures attention on a resized copy (the model itself is left as it is).
    ``compare`` is a second ``TransferModel`` measured the same way, with the per-block shift of mean
    attention distance (``compare - model``). The rollout figure shows the first ``rollout_figure_images``
    images; ``inspect.json`` holds every image's map. Returns what ``inspect.json`` holds.
    """
    from .figures import plot_attention_distance, plot_pos_embed_similarity, plot_rollout

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    images = list(images)
    names = list(image_names) if image_names is not None else [f"image {i}" for i in range(len(images))]
    result: dict = {"num_images": len(images), "prefix_tokens": PREFIX_CHOICE,
                    "rollout_settings": {"head_fusion": head_fusion, "discard_ratio": discard_ratio, "query": query},
                    "images": names, "models": {}, "figures": []}
    distance_panels: dict = {}
    uniform: dict = {}
    similarity_panels: dict = {}
    for label, subject in zip(labels, [model] + ([compare] if compare is not None else [])):
        entry = {"model": model_summary(subject)}
        entry["pos_embed_similarity"], panels = _similarity_section(subject, image_size, interpolation)
        similarity_panels.update({f"{label}: {k}": v for k, v in panels.items()})
        if images:
            measured = subject
            if image_size is not None:
                measured = copy.deepcopy(subject)
                measured.resize(image_size, interpolation=interpolation)
                entry["attention_model"] = model_summary(measured)
            found = measure_attention(measured, images, batch_size, head_fusion, discard_ratio, query, label,
                                      keep_pictures=rollout_figure_images)
            per_head = found["distances"].mean(1)  # over images
            entry["attention_distance"] = {
                "unit": "pixels", "per_head": per_head.tolist(), "per_block": per_head.mean(1).tolist(),
                "uniform_attention": uniform_attention_distance(measured.grid_size, measured.patch_size),
                "per_image": found["distances"].permute(1, 0, 2).tolist(),
            }
            entry["rollout"] = found["rollout"].tolist()
            distance_panels[label] = per_head.numpy()
            uniform[label] = entry["attention_distance"]["uniform_attention"]
            rollout_path = output / f"rollout_{label}.png"
            shown = min(len(images), rollout_figure_images)
            plot_rollout(found["pictures"][:shown], found["rollout"][:shown].numpy(), rollout_path)
            result["figures"].append(rollout_path.name)
        result["models"][label] = entry
    if compare is not None and distance_panels.get(labels[1]) is not None and labels[0] in distance_panels:
        a, b = (np.asarray(result["models"][k]["attention_distance"]["per_block"]) for k in labels[:2])
        depth = min(len(a), len(b))
        result["attention_distance_shift_per_block"] = (b[:depth] - a[:depth]).tolist()
    plot_pos_embed_similarity(similarity_panels, output / "pos_embed_similarity.png")
    result["figures"].append("pos_embed_similarity.png")
    if distance_panels:
        plot_attention_distance(distance_panels, output / "attention_distance.png", uniform=uniform)
        result["figures"].append("attention_distance.png")
    (output / "inspect.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
