"""The evaluation's two pictures: a row-normalised confusion matrix and a contact sheet of images.

Built on ``matplotlib.figure.Figure`` (no pyplot: no global state, no display needed). The confusion
matrix gives every class a fixed cell (at 100 classes 0.16 in, with 6 pt labels that do not overlap)
so the figure grows with the number of classes instead of shrinking the labels to nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_LABEL_CHARS = 28
DPI = 110


def _layout(num_classes: int) -> tuple[float, float]:
    """(cell size in inches, label font size in points) for ``num_classes`` rows."""
    if num_classes <= 10:
        return 0.5, 10.0
    if num_classes <= 30:
        return 0.3, 8.0
    return 0.16, 6.0


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a class's share of predictions); rows without examples stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_figure(matrix: np.ndarray, class_names: "list[str]", title: str = "confusion matrix (row-normalised)"):
    """A ``Figure``: rows are true classes, columns predictions, colour the row's share (0..1)."""
    from matplotlib.figure import Figure

    n = len(class_names)
    cell, font = _layout(n)
    labels = [_short(str(c)) for c in class_names]
    label_in = 0.3 + max((len(s) for s in labels), default=1) * font * 0.62 / 72  # room for the longest label
    plot = max(2.5, cell * n)
    left = bottom = label_in + 0.35  # + the axis title
    width, height = left + plot + 1.1, bottom + plot + 0.5  # + colour bar, + title
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((left / width, bottom / height, plot / width, plot / height))
    cax = fig.add_axes(((left + plot + 0.15) / width, bottom / height, 0.18 / width, plot / height))
    shares = row_normalised(matrix)
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    fig.colorbar(image, cax=cax, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels, fontsize=font)
    ax.set_xlabel("predicted", fontsize=font + 2)
    ax.set_ylabel("true", fontsize=font + 2)
    ax.set_title(title, fontsize=font + 3)
    ax.tick_params(length=2, pad=1)
    if n <= 15:  # the shares themselves, where they fit
        for (r, c), value in np.ndenumerate(shares):
            if np.asarray(matrix)[r, c]:
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=font - 1,
                        color="white" if value > 0.5 else "black")
    return fig


def contact_sheet(images: list, captions: "list[str]", columns: int = 4, title: str = ""):
    """A ``Figure`` with the images in a grid, each over its caption (PIL images or arrays)."""
    from matplotlib.figure import Figure

    from ..data.images import to_rgb

    count = max(1, len(images))
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    thumb = 2.2
    fig = Figure(figsize=(columns * thumb, rows * (thumb + 0.55) + (0.4 if title else 0)), dpi=DPI)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        picture = to_rgb(image)
        picture.thumbnail((256, 256))
        ax.imshow(np.asarray(picture), interpolation="nearest")
        ax.set_title(caption, fontsize=7, wrap=True)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path: "str | Path") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def figure_pixels(fig) -> np.ndarray:
    """The rendered figure as ``(H, W, 3)`` uint8 (what TensorBoard's ``add_image`` takes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
