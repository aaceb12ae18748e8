"""``vit-transfer evaluate MODEL --data SOURCE [--split test] [--output DIR]``."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="top-1/top-5, per-class report, confusion matrix and worst mistakes of a trained model",
        description="Score a trained classifier on one split of a labelled data source (any source "
        "`vit-transfer train` reads) and write evaluation.json (top-1/top-5, loss, scikit-learn's per-class "
        "precision/recall/F1/support, confusion matrix, most confused pairs), confusion_matrix.png, "
        "confidently_wrong.png and predictions.csv. Works under `accelerate launch -m vit_transfer evaluate`.",
    )
    p.add_argument("model", help="a run folder, its model/ or adapter/, a saved model, a Hub id or a timm name")
    p.add_argument("--data", required=True, help="image folder, .csv/.parquet table, Hub dataset id or built-in name")
    p.add_argument("--split", default="test", help="the split to score (default test)")
    p.add_argument("--output", default="evaluation", help="folder for the report (default ./evaluation)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass per process (default 64)")
    p.add_argument("--image-column", default="image", help="image column of a table or Hub dataset")
    p.add_argument("--label-column", default="label", help="label column of a table or Hub dataset")
    p.add_argument("--format", default="auto", help="data format when auto-detection is not enough")
    p.add_argument("--hub-config", help="configuration name of a Hub dataset")
    p.add_argument("--max-samples", type=int, help="score a stratified subset of this many images")
    p.add_argument("--top-confused", type=int, default=20, help="confused class pairs to list (default 20)")
    p.add_argument("--wrong-images", type=int, default=16, help="images on the contact sheet (default 16)")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--precision", default="no", choices=["no", "bf16", "fp16", "auto"],
                   help="autocast precision (default no: fp32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..inference import evaluate, load_split
    from ..runtime.accelerator import make_accelerator

    accelerator = make_accelerator(args.precision)
    with accelerator.main_process_first():  # a Hub dataset downloads once
        dataset, id2label = load_split(args.data, args.split, image_column=args.image_column,
                                       label_column=args.label_column, format=args.format,
                                       hub_config=args.hub_config, max_samples=args.max_samples)
    result = evaluate(args.model, dataset, id2label, output_dir=args.output, batch_size=args.batch_size,
                      num_workers=args.num_workers, accelerator=accelerator, num_confused=args.top_confused,
                      num_wrong=args.wrong_images)
    if accelerator.is_main_process:
        n = result.numbers
        print(f"{args.split}: top-1 {n['top1']:.2%}  top-5 {n['top5']:.2%}  loss {n['loss']:.4f}  "
              f"({n['num_examples']} images, {n['skipped_images']} not decodable)")
        for pair in n["most_confused"][:5]:
            print(f"  {pair['true']} -> {pair['predicted']}: {pair['count']} ({pair['fraction']:.0%} of {pair['true']})")
        print(f"report: {Path(args.output) / 'evaluation.json'}")
    return 0
