"""``vit-transfer auto DATA [--model SRC] [--budget 20m] [--image-size N] --output DIR``: the best transfer for a
folder of images within a wall-clock budget, chosen on the validation split (``vit_transfer.auto``)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "auto",
        help="choose and train the best transfer for your images within a time budget",
        description="Probe sweep (pooling x blocks x C), then fine-tune candidates chosen by images per class, "
        "pruned by successive halving on the validation split, the winner trained for the time left. The returned "
        "model is the better of the best probe and the winner on validation. Writes a run folder like "
        "`vit-transfer train` (model/, metrics.json, evaluation/, recipe.yaml) plus leaderboard.md/json.",
    )
    p.add_argument("data", help="an image folder (class sub-folders, optionally under train/ validation/ test/), "
                                "a .csv/.parquet file or a Hub dataset id")
    p.add_argument("--model", default=None, help="any ViT load_vit takes (default: the recipes' default, "
                                               "model.source: the shipped vit-transfer/fashion-vit-tiny)")
    p.add_argument("--budget", default="20m", help="wall-clock budget: 90s, 20m, 1h30m (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=None, help="resize the model to this input size")
    p.add_argument("--output", required=True, help="the run folder to write (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when a GPU is present")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..autoselect import AutoSettings, auto, parse_duration
    from ..config import ModelConfig

    budget = parse_duration(args.budget)  # a malformed budget fails before anything loads
    settings = AutoSettings(overwrite=args.overwrite, cpu=args.cpu, num_workers=args.num_workers)
    result = auto(args.data, args.model or ModelConfig().source, budget_seconds=budget, image_size=args.image_size,
                  output_dir=args.output, settings=settings)
    test = result.metrics.get("test_top1")
    print(f"returned: {result.chosen} (validation top-1 {result.val_top1:.4f}; best probe "
          f"{result.sweep.val_top1:.4f})" + (f"; test top-1 {test:.4f}" if test is not None else ""))
    if result.metrics["auto"].get("short_budget"):  # why no fine-tune challenged the probe
        print(result.metrics["auto"]["short_budget"])
    print(f"run folder: {result.output_dir} (leaderboard.md lists every candidate)")
    return 0
