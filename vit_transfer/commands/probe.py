"""``vit-transfer probe RECIPE.yaml [key=value ...]``: linear probe + few-shot on frozen features."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="linear-probe and few-shot evaluate a frozen ViT's features (cached) on a dataset",
        description="Embed the dataset once with the frozen backbone (features cached on disk), fit an "
        "L2 logistic regression with C chosen on validation, run few-shot ridge regression, and save the "
        "probe as the model's classifier. Works under `accelerate launch -m vit_transfer probe`.",
    )
    p.add_argument("recipe", nargs="?", help="recipe YAML (model:, data:, probe:, output_dir, seed) or a shipped name")
    p.add_argument("overrides", nargs="*", help="recipe overrides like probe.pooling=mean data.source=DIR")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--output-dir", help="where to write probe_results.json and model/ (overrides output_dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from ..config import load_recipe
    from ..probe import ProbeRecipe, linear_probe

    recipe_path, overrides = args.recipe, list(args.overrides)
    if recipe_path and "=" in recipe_path and not Path(recipe_path).is_file():
        recipe_path, overrides = None, [recipe_path, *overrides]  # only overrides were given
    if args.no_cache:
        overrides.append("probe.cache=false")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(recipe_path, overrides, ProbeRecipe)
    result = linear_probe(recipe)
    if PartialState().is_main_process:
        print(result.table())
        print(f"results: {Path(recipe.output_dir) / 'probe_results.json'}")
    return 0
