"""``vit-transfer resize``: load, resize position embeddings, optionally re-head, and save."""

from __future__ import annotations

import argparse
import json


def _size(text: str) -> int | tuple[int, int]:
    """``384`` or ``384x512`` (height x width)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from exc
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "resize",
        help="resize a ViT's position embeddings (and patch size / head) and save it",
        description="Load a ViT, interpolate its position embeddings to a new image size, optionally "
        "change the patch size or attach a new head, and save it so stock loaders reload it at the new size.",
    )
    p.add_argument("--model", required=True, help="Hub id, timm name, local folder or weights file")
    p.add_argument("--image-size", required=True, type=_size, help="new size: N or HxW (e.g. 384 or 384x512)")
    p.add_argument("--patch-size", type=int, help="new patch size (FlexiViT kernel resampling)")
    p.add_argument("--num-labels", type=int, help="attach a new zero-initialised head with K labels")
    p.add_argument("--labels", help="comma-separated label names for the new head (implies --num-labels)")
    p.add_argument("--interpolation", default="bicubic",
                   help="bicubic (default), bilinear, nearest, or a preset: transformers, timm, torchvision, big_vision")
    p.add_argument("--align-corners", action="store_true", help="interpolate with align_corners=True")
    p.add_argument("--ecosystem", choices=["hf", "timm"], help="force the ecosystem when the source is ambiguous")
    p.add_argument("--architecture", help="timm architecture for a bare weights file")
    p.add_argument("--output", required=True, help="folder to write the resized model to")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import load_vit

    model = load_vit(args.model, ecosystem=args.ecosystem, architecture=args.architecture)
    before = sum(p.numel() for p in model.parameters())
    report = model.resize(args.image_size, args.patch_size, args.interpolation,
                          align_corners=True if args.align_corners else None)
    id2label = None
    if args.labels:
        names = [n.strip() for n in args.labels.split(",") if n.strip()]
        id2label = dict(enumerate(names))
        if args.num_labels is not None and args.num_labels != len(names):
            raise SystemExit(f"--num-labels {args.num_labels} disagrees with {len(names)} --labels")
    num_labels = len(id2label) if id2label else args.num_labels
    if num_labels is not None:
        model.set_head(num_labels, id2label)
    after = sum(p.numel() for p in model.parameters())
    out = model.save(args.output)
    if args.json:
        print(json.dumps({**report.__dict__, "parameters_before": before, "parameters_after": after,
                          "num_labels": model.num_labels, "output": str(out), "ecosystem": model.ecosystem}))
        return 0
    print(f"{model.ecosystem} model from {args.model}")
    print(f"  image   {_fmt(report.old_image_size)} -> {_fmt(report.new_image_size)}")
    print(f"  patch   {_fmt(report.old_patch_size)} -> {_fmt(report.new_patch_size)}")
    print(f"  grid    {_fmt(report.old_grid)} -> {_fmt(report.new_grid)}  "
          f"({report.num_prefix_tokens} prefix row(s) kept, {report.interpolation['mode']}"
          f"{', align_corners' if report.interpolation['align_corners'] else ''})")
    print(f"  labels  {model.num_labels}")
    print(f"  params  {before:,} -> {after:,}")
    print(f"saved to {out}")
    return 0


def _fmt(pair) -> str:
    return f"{pair[0]}x{pair[1]}"
