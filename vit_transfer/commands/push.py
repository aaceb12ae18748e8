"""``vit-transfer push``: upload a trained run (model, LoRA adapter or merged model) with a model card."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push",
        help="push a trained model, LoRA adapter or merged model to the Hugging Face Hub with a model card",
        description="Upload OUTPUT_DIR (a `vit-transfer train` output folder, or a saved model / adapter folder) "
        "in the layout its ecosystem's stock loader reads, with a README.md model card built from the run. "
        "The token comes from HF_TOKEN or `hf auth login`.",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="training output folder, or a saved model/adapter folder")
    p.add_argument("--repo-id", required=True, help="USER/NAME (or ORG/NAME) of the model repo; created if missing")
    p.add_argument("--private", action="store_true", help="create the repo private (ignored if it already exists)")
    p.add_argument("--revision", help="branch to push to; created from main if it does not exist")
    p.add_argument("--commit-message", help="commit message (default names what was pushed and its eval top-1)")
    p.add_argument("--what", choices=["auto", "model", "adapter", "merged"], default="auto",
                   help="auto (default): the full/merged model if the run saved one, else the adapter; "
                   "model: full model; adapter: the peft adapter alone (lora / peft runs); merged: the adapter merged into the weights")
    p.add_argument("--dry-run", metavar="DIR", help="write the exact upload folder to DIR and upload nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_run

    result = push_run(
        args.output_dir, args.repo_id, private=args.private, revision=args.revision,
        commit_message=args.commit_message, what=args.what, dry_run_dir=args.dry_run,
    )
    if args.json:
        data = {k: (str(v) if v is not None and k == "folder" else v) for k, v in result.__dict__.items()}
        print(json.dumps(data))
        return 0
    print(result.summary())
    for name in result.files:
        print(f"  {name}")
    return 0
