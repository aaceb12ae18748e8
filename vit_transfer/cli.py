"""``vit-transfer`` command line: a thin dispatcher over ``vit_transfer.commands``.

Each sub-command lives in its own module under ``vit_transfer/commands/`` and exposes
``register(subparsers)``; those modules import their heavy dependencies only when their command runs, so
``--help`` is fast. A command module that fails to import is an error, never a command silently missing.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import VitTransferError

# command name -> module in vit_transfer.commands (one module per command)
COMMANDS = {
    "resize": "resize",
    "convert": "convert",
    "train": "train",
    "probe": "probe",
    "predict": "predict",
    "evaluate": "evaluate",
    "push": "push",
    "quickstart": "quickstart",
    "recipes": "recipes",
    "inspect": "inspect",
    "auto": "auto",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vit-transfer",
        description="Transfer pretrained Vision Transformers (transformers or timm) to new tasks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"vit_transfer.commands.{module}").register(sub)  # a failed import is a bug to show
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except VitTransferError as exc:
        print(f"vit-transfer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
