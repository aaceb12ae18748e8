"""``vit-transfer recipes list`` / ``recipes copy NAME [DEST]``: the recipes shipped in the package."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "recipes",
        help="list the shipped recipes, or copy one to edit (train NAME / probe NAME also take a shipped name)",
        description="Recipes ship inside the package: `vit-transfer train NAME` and `vit-transfer probe NAME` "
        "take one by name. `recipes copy` writes one out to change it, then `vit-transfer train FILE.yaml`.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="name and one-line description of each shipped recipe").set_defaults(func=run_list)
    copy = sub.add_parser("copy", help="copy a shipped recipe to a file you can edit")
    copy.add_argument("name", metavar="NAME", help="shipped recipe name (see `vit-transfer recipes list`)")
    copy.add_argument("dest", metavar="DEST", nargs="?", help="file or folder to write (default: ./NAME.yaml)")
    copy.add_argument("--force", action="store_true", help="overwrite DEST if it exists")
    copy.set_defaults(func=run_copy)


def run_list(args: argparse.Namespace) -> int:
    from ..recipes import describe, shipped_recipes

    recipes = shipped_recipes()
    width = max(map(len, recipes), default=0)
    for name, path in recipes.items():
        print(f"{name:<{width}}  {describe(path)}")
    return 0


def run_copy(args: argparse.Namespace) -> int:
    from ..recipes import copy_recipe

    print(f"copied {args.name} to {copy_recipe(args.name, args.dest, force=args.force)}")
    return 0
