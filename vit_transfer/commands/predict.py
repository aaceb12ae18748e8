"""``vit-transfer predict MODEL IMAGES... [--top-k K] [--batch-size B] [--output preds.csv|.jsonl]``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="top-k labels and probabilities of a trained model for image files, folders or tables",
        description="Run a trained classifier over images through its own eval transform (at its own size). "
        "IMAGES are files, folders (searched recursively) or CSV/parquet tables with an image column. "
        "Images that cannot be decoded are listed with the reason. Works under "
        "`accelerate launch -m vit_transfer predict`.",
    )
    p.add_argument("model", help="a run folder, its model/ or adapter/, a saved model, a Hub id or a timm name")
    p.add_argument("images", nargs="+", help="image files, folders or .csv/.parquet tables")
    p.add_argument("--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--output", help="write predictions to FILE.csv or FILE.jsonl (default: CSV on stdout)")
    p.add_argument("--image-column", default="image", help="the image column of a table input (default image)")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--precision", default="no", choices=["no", "bf16", "fp16", "auto"],
                   help="autocast precision (default no: fp32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference import predict
    from ..runtime.accelerator import make_accelerator

    accelerator = make_accelerator(args.precision)
    result = predict(args.model, args.images, top_k=args.top_k, batch_size=args.batch_size,
                     image_column=args.image_column, num_workers=args.num_workers, accelerator=accelerator)
    if not accelerator.is_main_process:
        return 0
    if args.output:
        path = result.write(args.output)
        print(f"{len(result.predictions) - len(result.failures)} image(s) predicted: {path}", file=sys.stderr)
    else:
        sys.stdout.write(result.to_csv())
    for failure in result.failures:
        print(f"not decodable: {failure.path} ({failure.error})", file=sys.stderr)
    return 0
