"""``vit-transfer train RECIPE.yaml [key=value ...]``: fine-tune as a recipe says.

The same code path runs under ``accelerate launch -m vit_transfer train ...``. The recipe (with its
overrides) is read and validated before anything is built, so a typo fails in a second.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune a ViT from a recipe (full, head-only or LoRA)",
        description="Fine-tune a pretrained ViT as RECIPE.yaml says; any recipe value can be overridden "
        "with key=value (e.g. optim.lr=0.003 train.max_steps=200). Multi-process: "
        "accelerate launch -m vit_transfer train RECIPE.yaml ...",
    )
    p.add_argument("recipe", help="recipe YAML file, or a shipped recipe's name (vit-transfer recipes list)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, e.g. optim.lr=0.01")
    p.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import to_dict
    from ..training.recipe import load_train_recipe

    recipe = load_train_recipe(args.recipe, args.overrides)  # fails fast on unknown keys / wrong types
    if args.print_recipe:
        import yaml

        print(yaml.safe_dump(to_dict(recipe), sort_keys=False), end="")
        return 0
    from ..training.run import train

    result = train(recipe)
    from accelerate.state import PartialState

    if PartialState().is_main_process:
        shown = {k: v for k, v in result.metrics.items() if k.startswith(("eval_", "test_", "train_loss", "steps",
                                                                        "images_per_second", "skipped"))}
        print(json.dumps(shown, indent=2))
        print(f"run folder: {result.output_dir}")
    return 0
