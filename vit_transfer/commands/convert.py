"""``vit-transfer convert SRC --to timm|hf --output DIR``: a standard ViT in the other ecosystem's layout."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a standard ViT between the transformers and timm layouts (same logits)",
        description=(
            "Map a standard ViT's weights and config between transformers (ViTForImageClassification) and "
            "timm (VisionTransformer). The folder written loads with the stock loader of the target: "
            "AutoModelForImageClassification.from_pretrained(DIR) or timm.create_model('local-dir:DIR', "
            "pretrained=True). The result is reloaded and its logits checked against the source."
        ),
    )
    parser.add_argument("source", help="Hub id, timm name, local folder or weights file of the model to convert")
    parser.add_argument("--to", required=True, choices=["hf", "timm"], help="target ecosystem")
    parser.add_argument("--output", required=True, help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument("--ecosystem", choices=["hf", "timm"], default=None,
                        help="the source's ecosystem, when the source string alone is ambiguous")
    parser.add_argument("--architecture", default=None,
                        help="timm architecture of a bare weights file (e.g. vit_base_patch16_224)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reloading the result and comparing its logits with the source")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.convert import convert_checkpoint

    convert_checkpoint(
        args.source,
        args.to,
        args.output,
        ecosystem=args.ecosystem,
        architecture=args.architecture,
        overwrite=args.overwrite,
        verify=args.verify,
        log=print,
    )
    return 0
