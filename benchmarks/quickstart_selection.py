"""How the quickstart's defaults are chosen: every choice scored on a validation split, never on test.

The quickstart reports the digits' fixed test half (899 images). Its choices (image size, learning
rates, label smoothing, probe pooling and blocks) are picked here on a seeded, stratified 20% of the
898 training digits, training on the other 80%; the test split is not loaded at all. The quickstart
then trains on all 898 with the winners and scores the test split once.

    python benchmarks/quickstart_selection.py            # about 15 min on 2 fp32 CPU cores
    python benchmarks/quickstart_selection.py --quick    # two steps per fine-tune: checks the plumbing

Writes benchmarks/results/quickstart_selection.md (and .json beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from vit_transfer.data import DataConfig, load_image_datasets
from vit_transfer.models import load_vit
from vit_transfer.probe import ProbeConfig, probe_model
from vit_transfer.quickstart import QuickstartConfig, _recipe
from vit_transfer.training import train

RESULTS = Path(__file__).resolve().parent / "results" / "quickstart_selection.md"
VAL_FRACTION = 0.2


def selection_data(seed: int) -> DataConfig:
    """Train = 80% of the digits' train half, eval = the other 20% (stratified); no test split."""
    return DataConfig(source="sklearn:digits", eval_split=None, val_fraction=VAL_FRACTION, test_split="none",
                      split_seed=seed, num_workers=0)


def finetune_val(cfg: QuickstartConfig, method: str, pretrained: bool, lr: float, workdir: Path) -> dict:
    recipe = _recipe(cfg, f"{method}-{pretrained}-{lr}-{cfg.image_size}-{cfg.label_smoothing}", method,
                     pretrained, lr)
    recipe = dataclasses.replace(recipe, data=selection_data(cfg.seed),
                                 output=dataclasses.replace(recipe.output, dir=str(workdir / recipe.output.dir)))
    start = time.perf_counter()
    metrics = train(recipe, command="benchmarks/quickstart_selection.py").metrics
    return {"val_top1": metrics["eval_top1"], "seconds": time.perf_counter() - start}


def probe_val(cfg: QuickstartConfig, pooling: str, blocks: int) -> dict:
    data = load_image_datasets(selection_data(cfg.seed))
    data = dataclasses.replace(data, test=data.eval, eval=None)  # C is chosen on a slice of train
    model = load_vit(cfg.model, image_size=cfg.image_size)
    result = probe_model(model, data, ProbeConfig(shots=[cfg.shots], fewshot=False, cache=False, pooling=pooling,
                                                  last_n=blocks, c_steps=8, c_refine_steps=2),
                         seed=cfg.seed, progress=False)
    return {"val_top1": result.linear.top1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two steps per fine-tune (plumbing check)")
    args = parser.parse_args(argv)
    base = QuickstartConfig(max_steps=2 if args.quick else None, progress=False)
    rows: list[dict] = []

    def record(choice: str, value, score: dict) -> None:
        rows.append({"choice": choice, "value": str(value), **score})
        print(f"{choice:<28} {str(value):<22} val {100 * score['val_top1']:5.1f}%", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for size in (24, 32):
            cfg = dataclasses.replace(base, image_size=size)
            record("image size: probe", size, probe_val(cfg, base.probe_pooling, base.probe_blocks))
            record("image size: full fine-tune", size, finetune_val(cfg, "full", True, base.lr, work))
        for pooling in ("cls", "mean", "cls+mean"):
            for blocks in (1, 3, 6):
                record("probe pooling x blocks", f"{pooling} x {blocks}", probe_val(base, pooling, blocks))
        for smoothing in (0.0, 0.1):
            for lr in (0.03, 0.06, 0.1):
                cfg = dataclasses.replace(base, label_smoothing=smoothing)
                record("full FT lr (smoothing)", f"{lr} ({smoothing})", finetune_val(cfg, "full", True, lr, work))
        for lr in (0.003, 0.006, 0.01):
            record("LoRA lr", lr, finetune_val(base, "lora", True, lr, work))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    lines = [
        "# Quickstart choices, scored on a validation split",
        "",
        f"Written by `python benchmarks/quickstart_selection.py{' --quick' if args.quick else ''}`. "
        f"Train: 80% of the digits' train half; validation: the other {int(100 * VAL_FRACTION)}% (seeded, "
        "stratified). The test split is not loaded. Everything not varied is the quickstart's default "
        f"(`QuickstartConfig`: {base.epochs:g} epochs, batch {base.batch_size}, precision {base.precision}).",
        "",
        "| choice | value | validation top-1 | seconds |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['choice']} | {r['value']} | {100 * r['val_top1']:.1f}% | "
              f"{r['seconds']:.0f} |" if "seconds" in r else
              f"| {r['choice']} | {r['value']} | {100 * r['val_top1']:.1f}% | |" for r in rows]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
