"""The three ViT-paper pictures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_attention_distance(distances: Mapping[str, np.ndarray], path: "str | Path",
                            uniform: Mapping[str, float] | None = None) -> Path:
    """Heads as dots against depth (one colour per model): ``distances[name]`` is ``(blocks, heads)`` pixels.

    ``uniform[name]`` draws the distance of a head attending to every patch equally (a dashed line)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    markers = "os^D"
    for k, (name, values) in enumerate(distances.items()):
        values = np.asarray(values)
        blocks, heads = values.shape
        offset = (k - (len(distances) - 1) / 2) * 0.12
        x = np.repeat(np.arange(1, blocks + 1), heads) + offset
        ax.scatter(x, values.reshape(-1), s=18, alpha=0.75, marker=markers[k % len(markers)], label=name)
        line = ax.plot(np.arange(1, blocks + 1) + offset, values.mean(1), alpha=0.5, linewidth=1)[0]
        if uniform and name in uniform:
            ax.axhline(uniform[name], linestyle="--", linewidth=1, color=line.get_color(),
                       label=f"{name}: uniform attention")
    ax.set_xlabel("block (depth)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title("Mean attention distance per head")
    ax.set_xticks(np.arange(1, max(np.asarray(v).shape[0] for v in distances.values()) + 1))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def similarity_mosaic(similarity: np.ndarray, gap: int = 1) -> np.ndarray:
    """One image of the ``(gh, gw, gh, gw)`` grid of grids: tile (i, j) is patch (i, j)'s similarity map."""
    gh, gw = similarity.shape[:2]
    mosaic = np.full((gh * (gh + gap) - gap, gw * (gw + gap) - gap), np.nan)
    for i in range(gh):
        for j in range(gw):
            r, c = i * (gh + gap), j * (gw + gap)
            mosaic[r:r + gh, c:c + gw] = similarity[i, j]
    return mosaic


def plot_pos_embed_similarity(panels: Mapping[str, np.ndarray], path: "str | Path") -> Path:
    """Grids of grids side by side (e.g. the model's table and the resized one), one colour scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    image = None
    for ax, (title, similarity) in zip(axes[0], panels.items()):
        image = ax.imshow(similarity_mosaic(np.asarray(similarity)), cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="cosine similarity")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_rollout(images: Sequence[np.ndarray], maps: np.ndarray, path: "str | Path", columns: int = 4) -> Path:
    """Each ``(H, W, 3)`` uint8 image with its ``(gh, gw)`` rollout map (scaled to its maximum) laid over it."""
    plt = _pyplot()
    count = len(images)
    columns = max(1, min(columns, count))
    rows = (count + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat in zip(axes.flat, images, maps):
        h, w = image.shape[:2]
        ax.imshow(image, extent=(0, w, h, 0))
        ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="jet", alpha=0.45, extent=(0, w, h, 0),
                  interpolation="bilinear", vmin=0, vmax=1)
    fig.suptitle("Attention rollout", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
