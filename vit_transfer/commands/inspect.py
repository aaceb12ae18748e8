"""``vit-transfer inspect MODEL``: attention distance, position-embedding similarity and rollout figures."""

from __future__ import annotations

import argparse
import json

from .resize import _size


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="what a ViT learned: attention distance, position-embedding similarity, attention rollout",
        description="Write PNG figures and inspect.json: mean attention distance per head per block, the "
        "position-embedding similarity grid (and the resized table's with --image-size), attention rollout "
        "over the images, and with --compare the same for a second model plus the per-block distance shift.",
    )
    p.add_argument("model", help="Hub id, timm name, local folder or weights file (as load_vit takes), or a run folder")
    p.add_argument("--images", nargs="+", default=[], metavar="FILE|DIR", help="image files or folders of them")
    p.add_argument("--data", help="a dataset source (as data.source in recipes) to take images from")
    p.add_argument("--split", default="test", choices=["train", "eval", "test"], help="which split of --data")
    p.add_argument("--num-images", type=int, default=16, help="images taken from --data (default 16)")
    p.add_argument("--image-size", type=_size, help="also show the table resized to N or HxW, and measure attention there")
    p.add_argument("--interpolation", default="bicubic", help="how the table is resized (as in vit-transfer resize)")
    p.add_argument("--compare", metavar="OTHER_MODEL", help="a second model (e.g. after fine-tuning) measured the same way")
    p.add_argument("--head-fusion", default="mean", choices=["mean", "max", "min"], help="rollout head fusion")
    p.add_argument("--discard-ratio", type=float, default=0.0, help="rollout: share of weakest weights dropped")
    p.add_argument("--query", default="cls", choices=["cls", "prefix"],
                   help="rollout row: the class token's, or the mean of every prefix token's")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--output", required=True, help="folder for the figures and inspect.json")
    p.set_defaults(func=run)


def _data_images(source: str, split: str, count: int) -> tuple[list, list[str]]:
    from ..data import DataConfig, load_image_datasets
    from ..errors import DataError

    datasets = load_image_datasets(DataConfig(source=source))
    dataset = getattr(datasets, split) or datasets.train
    images, names = [], []
    for index in range(len(dataset)):
        if len(images) == count:
            break
        image, label = dataset[index]
        if image is not None:
            images.append(image)
            names.append(f"{dataset.describe(index)} ({datasets.id2label.get(label, label)})")
    if not images:
        raise DataError(f"--data {source}: no decodable image in its {split} split")
    return images, names


def _model_source(source: str) -> str:
    """A training run folder means its ``model/`` (what ``vit-transfer train`` saved); anything else as given."""
    from pathlib import Path

    folder = Path(source)
    if folder.is_dir() and not (folder / "config.json").is_file() and (folder / "model" / "config.json").is_file():
        return str(folder / "model")
    return source


def run(args: argparse.Namespace) -> int:
    from ..data import decode_image
    from ..diagnostics import find_images, inspect_model
    from ..models import load_vit

    model = load_vit(_model_source(args.model))
    compare = load_vit(_model_source(args.compare)) if args.compare else None
    paths = find_images(args.images)
    images, names = [decode_image(p) for p in paths], [str(p) for p in paths]
    if args.data:
        more, more_names = _data_images(args.data, args.split, args.num_images)
        images, names = images + more, names + more_names
    if not images:
        print("no --images or --data: only the position-embedding similarity is computed")
    result = inspect_model(model, images, args.output, image_size=args.image_size, compare=compare,
                           head_fusion=args.head_fusion, discard_ratio=args.discard_ratio, query=args.query,
                           batch_size=args.batch_size, interpolation=args.interpolation, image_names=names)
    for label, entry in result["models"].items():
        sim = entry["pos_embed_similarity"]
        line = (f"{label}: {sim['absent']}" if sim.get("absent")
                else f"{label}: position-embedding locality {sim['locality']['locality']:+.3f}")
        if "resized" in sim:
            line += f" (resized {sim['resized']['locality']['locality']:+.3f})"
        if "attention_distance" in entry:
            blocks = ", ".join(f"{d:.1f}" for d in entry["attention_distance"]["per_block"])
            line += f"; mean attention distance per block (px): {blocks}"
        print(line)
    if "attention_distance_shift_per_block" in result:
        print("shift per block (compare - model, px): "
              + json.dumps([round(v, 2) for v in result["attention_distance_shift_per_block"]]))
    print(f"figures and inspect.json in {args.output}")
    return 0
