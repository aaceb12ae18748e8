"""Draw docs/figures/pos_embed_resize.png from the shipped checkpoint (PIL only, no plotting stack).

Each panel: cosine similarity of one patch position's embedding to every position of the grid,
for the learned 7x7 table and after resizing to 8x8 and 6x10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vit_transfer import load_vit

CELL = 14  # pixels per grid cell
PAD = 10


def colormap(values: np.ndarray) -> np.ndarray:
    """Map [-1, 1] to a blue-white-red ramp."""
    v = np.clip((values + 1) / 2, 0, 1)[..., None]
    blue, white, red = np.array([40, 70, 160]), np.array([250, 250, 250]), np.array([180, 30, 40])
    low = blue + (white - blue) * (v * 2)
    high = white + (red - white) * ((v - 0.5) * 2)
    return np.where(v < 0.5, low, high).astype(np.uint8)


def similarity_panels(table: torch.Tensor, grid: tuple[int, int], prefix: int, anchors) -> list[Image.Image]:
    patches = torch.nn.functional.normalize(table[0, prefix:].float(), dim=-1)
    sims = (patches @ patches.T).reshape(grid[0] * grid[1], *grid).numpy()
    panels = []
    for r, c in anchors:
        idx = min(int(round(r * (grid[0] - 1))), grid[0] - 1) * grid[1] + min(int(round(c * (grid[1] - 1))), grid[1] - 1)
        img = Image.fromarray(colormap(sims[idx])).resize((grid[1] * CELL, grid[0] * CELL), Image.NEAREST)
        panels.append(img)
    return panels


def main(out: Path = Path(__file__).parent / "figures" / "pos_embed_resize.png") -> Path:
    anchors = [(0, 0), (0, 1), (0.5, 0.5), (1, 0), (1, 1)]
    rows = []
    for size in (None, 32, (24, 40)):
        model = load_vit("vit-transfer/fashion-vit-tiny", image_size=size)
        label = f"{model.grid_size[0]}x{model.grid_size[1]} grid ({model.image_size[0]}x{model.image_size[1]} px)"
        rows.append((label, similarity_panels(model.pos_embed.detach(), model.grid_size, model.num_pos_prefix_tokens, anchors)))
    width = PAD + max(sum(p.width + PAD for p in panels) for _, panels in rows) + 150
    height = PAD + sum(max(p.height for p in panels) + PAD + 14 for _, panels in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for label, panels in rows:
        draw.text((PAD, y), label, fill="black")
        y += 14
        x = PAD
        for p in panels:
            canvas.paste(p, (x, y))
            x += p.width + PAD
        y += max(p.height for p in panels) + PAD
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


if __name__ == "__main__":
    print(main())
