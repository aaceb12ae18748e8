"""``vit-transfer quickstart``: the shipped ViT transferred to real digits, offline, in minutes."""

from __future__ import annotations

import argparse


OPTIONS = ("output_dir", "model", "image_size", "epochs", "max_steps", "precision", "seed")  # QuickstartConfig fields


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="offline demo: the shipped Fashion-MNIST ViT transferred to scikit-learn digits, six ways",
        description="Takes the ViT that ships with vit-transfer (pretrained on Fashion-MNIST, 28 px) to "
        "scikit-learn's handwritten digits at a new resolution: linear probe, 10-shot probe, LoRA, full fine-tune, a "
        "full fine-tune from random weights as the control, and auto. Prints one table; writes results.json and the models. "
        "Defaults: the measured run in docs/quickstart.md (QuickstartConfig).",
    )
    # every default lives in QuickstartConfig (the measured run); an option given here overrides it
    p.add_argument("--output", dest="output_dir", help="folder for results.json and the models")
    p.add_argument("--model", help="model source (default: the shipped ViT)")
    p.add_argument("--image-size", type=int, help="resolution to transfer at (position embeddings are resized to fit)")
    p.add_argument("--epochs", type=float, help="fine-tuning epochs, the same for each method")
    p.add_argument("--max-steps", type=int, help="cap each fine-tune at N steps (smoke runs)")
    p.add_argument("--precision", choices=["auto", "no", "bf16"],
                   help="fine-tuning autocast; auto: bf16 where the hardware runs it natively, else fp32")
    p.add_argument("--seed", type=int, help="split and training seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..quickstart import QuickstartConfig, run_quickstart

    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    run_quickstart(QuickstartConfig(**given))
    return 0
