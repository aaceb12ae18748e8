"""``vit-transfer quickstart``: the shipped ViT transferred to real digits, offline, in minutes."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="offline demo: the shipped Fashion-MNIST ViT transferred to scikit-learn digits, five ways",
        description="Takes the ViT that ships with vit-transfer (pretrained on Fashion-MNIST, 28 px) to "
        "scikit-learn's handwritten digits at 24 px: linear probe, 10-shot probe, LoRA, full fine-tune, and a "
        "full fine-tune from random weights as the control. Prints one table; writes results.json and the models.",
    )
    p.add_argument("--output", default="quickstart-output", help="folder for results.json and the models")
    p.add_argument("--model", default="vit-transfer/fashion-vit-tiny", help="model source (default: the shipped ViT)")
    p.add_argument("--image-size", type=int, default=24, help="resolution to transfer at (default 24: a 6x6 grid)")
    p.add_argument("--epochs", type=float, default=None, help="fine-tuning epochs for each method")
    p.add_argument("--max-steps", type=int, default=None, help="cap each fine-tune at N steps (smoke runs)")
    p.add_argument("--precision", choices=["auto", "no", "bf16"], default="auto",
                   help="fine-tuning autocast; auto (default): bf16 where the hardware runs it natively, else fp32")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(model=args.model, image_size=args.image_size, output_dir=args.output,
                           precision=args.precision, seed=args.seed, max_steps=args.max_steps)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    run_quickstart(cfg)
    return 0
