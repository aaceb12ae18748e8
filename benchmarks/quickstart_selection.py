"""How the quickstart's defaults are chosen: every choice scored on a validation split, never on test.

The quickstart reports the digits' fixed test half (899 images). Its choices (image size, learning
rates, label smoothing, probe pooling and blocks, the fine-tunes' epochs) are picked here on a seeded, stratified 20% of the
898 training digits, training on the other 80%; the test split is not loaded at all. One such split
holds 180 images (one image is 0.56 point), so each choice is scored on three different carvings
(split seeds 0, 1, 2; training seed 0) and the mean decides; ties go to the smaller or cheaper
choice. The quickstart then trains on all 898 with the winners and scores the test split once.

    python benchmarks/quickstart_selection.py            # about 40 min on 2 fp32 CPU cores
    python benchmarks/quickstart_selection.py --quick --output /tmp/qs.md   # two steps a fine-tune: the plumbing
    python benchmarks/quickstart_selection.py --reuse --choices epochs       # one choice again, the rest kept

``--reuse`` takes rows already in the results JSON (same choice, value and split seed) instead of
re-running them: the runs are deterministic on one machine, so the table is the same. Each new row records
its machine and epochs (a row without them: the 2026-12-03 sweep, bf16, 10 epochs); the page lists them.

Writes benchmarks/results/quickstart_selection.md (and .json beside it), or ``--output``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from resumable import machine  # benchmarks/resumable.py (benchmarks/ is on sys.path when a script here runs)
from vit_transfer.data import DataConfig, load_image_datasets
from vit_transfer.models import load_vit
from vit_transfer.probe import ProbeConfig, probe_model
from vit_transfer.quickstart import FINE_TUNES, QuickstartConfig, _recipe
from vit_transfer.training import train

RESULTS = Path(__file__).resolve().parent / "results" / "quickstart_selection.md"
VAL_FRACTION = 0.2
CHOICES = {"image size: probe": "image-size", "image size: full fine-tune": "image-size",
           "probe pooling x blocks": "probe", "full FT lr (smoothing)": "full-lr", "LoRA lr": "lora-lr",
           "epochs: full fine-tune": "epochs", "epochs: LoRA": "epochs",
           **{f"batch 16, {e} epochs: {m} lr": "batch" for e in (6, 7) for m in ("full FT", "LoRA")}}  # -> --choices
EPOCHS = (5.0, 7.0, 10.0)
SHORT_EPOCHS = {7.0: (0.03, 0.06), 6.0: (0.06,)}  # batch 16: epochs -> full fine-tune rates
# what a row without these fields was measured with (the 2026-12-03 sweep)
EARLIER = {"epochs": 10.0, "batch_size": 32,
           "machine": "2026-12-03 at 7aa1835, a 2-core AMD EPYC with bf16 units (precision auto: bf16)"}


def selection_data(split_seed: int) -> DataConfig:
    """Train = 80% of the digits' train half, eval = the other 20% (stratified); no test split."""
    return DataConfig(source="sklearn:digits", eval_split=None, val_fraction=VAL_FRACTION, test_split="none",
                      split_seed=split_seed, num_workers=0)


def finetune_val(cfg: QuickstartConfig, split_seed: int, fine_tune: str, lr: float, workdir: Path) -> dict:
    """Validation top-1 of one of the quickstart's fine-tunes (a ``FINE_TUNES`` key: its method and optimiser) at
    ``lr``, with the length and batch it trained at."""
    method, _, optimizer, _ = FINE_TUNES[fine_tune]
    name = f"{fine_tune}-{lr}-{cfg.image_size}-{cfg.label_smoothing}-{cfg.epochs:g}-{cfg.batch_size}-{split_seed}"
    recipe = _recipe(cfg, name, method, True, lr, optimizer)
    recipe = dataclasses.replace(recipe, data=selection_data(split_seed),
                                 output=dataclasses.replace(recipe.output, dir=str(workdir / recipe.output.dir)))
    start = time.perf_counter()
    metrics = train(recipe, command="benchmarks/quickstart_selection.py").metrics
    return {"val_top1": metrics["eval_top1"], "val_loss": metrics["eval_loss"], "seconds": time.perf_counter() - start,
            "epochs": cfg.epochs, "batch_size": cfg.batch_size}


def probe_val(cfg: QuickstartConfig, split_seed: int, pooling: str, blocks: int) -> dict:
    data = load_image_datasets(selection_data(split_seed))
    data = dataclasses.replace(data, test=data.eval, eval=None)  # C is chosen on a slice of train
    model = load_vit(cfg.model, image_size=cfg.image_size)
    result = probe_model(model, data, ProbeConfig(shots=[cfg.shots], fewshot=False, cache=False, pooling=pooling,
                                                  last_n=blocks, c_steps=8, c_refine_steps=2),
                         seed=cfg.seed, progress=False)
    return {"val_top1": result.linear.top1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two steps per fine-tune (plumbing check)")
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reuse", action="store_true", help="reuse matching rows of the results JSON")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the .md to write (a .json beside it)")
    parser.add_argument("--choices", nargs="+", choices=sorted(set(CHOICES.values())),
                        default=sorted(set(CHOICES.values())),
                        help="sweep only these choices (with --reuse the others' rows are kept)")
    args = parser.parse_args(argv)
    base = QuickstartConfig(max_steps=2 if args.quick else None, progress=False)
    done = {}
    if args.reuse and args.output.with_suffix(".json").is_file():
        done = {(r["choice"], r["value"], r["seed"]): r
                for r in json.loads(args.output.with_suffix(".json").read_text())}
    rows: list[dict] = []

    def record(choice: str, value, seed: int, run) -> None:
        row = done.get((choice, str(value), seed))
        if row is None and CHOICES[choice] not in args.choices:
            return
        row = row or {"choice": choice, "value": str(value), "seed": seed, **run(), "machine": machine()}
        rows.append(row)
        print(f"{choice:<28} {str(value):<22} split {seed}  val {100 * row['val_top1']:5.1f}%", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in args.split_seeds:
            for size in (24, 32):
                cfg = dataclasses.replace(base, image_size=size)
                record("image size: probe", size, seed,
                       lambda: probe_val(cfg, seed, base.probe_pooling, base.probe_blocks))
                record("image size: full fine-tune", size, seed, lambda: finetune_val(cfg, seed, "full_finetune", base.lr, work))
            for pooling in ("cls", "mean", "cls+mean"):
                for blocks in (1, 3, 6):
                    record("probe pooling x blocks", f"{pooling} x {blocks}", seed,
                           lambda: probe_val(base, seed, pooling, blocks))
            for smoothing in (0.0, 0.1):
                for lr in (0.03, 0.06, 0.1):
                    cfg = dataclasses.replace(base, label_smoothing=smoothing)
                    record("full FT lr (smoothing)", f"{lr} ({smoothing})", seed,
                           lambda: finetune_val(cfg, seed, "full_finetune", lr, work))
            for lr in (0.003, 0.006, 0.01):
                record("LoRA lr", lr, seed, lambda: finetune_val(base, seed, "lora", lr, work))
            for epochs in EPOCHS:  # the fine-tunes' length: the quickstart's 5-minute target on CPUs without bf16
                cfg = dataclasses.replace(base, epochs=epochs, batch_size=32)
                record("epochs: full fine-tune", epochs, seed, lambda: finetune_val(cfg, seed, "full_finetune", base.lr, work))
                record("epochs: LoRA", epochs, seed, lambda: finetune_val(cfg, seed, "lora", base.lora_lr, work))
            # at a shorter length, a smaller batch: twice the updates for about the same compute
            for epochs, rates in SHORT_EPOCHS.items():
                cfg = dataclasses.replace(base, epochs=epochs, batch_size=16)
                for lr in rates:
                    record(f"batch 16, {epochs:g} epochs: full FT lr", lr, seed,
                           lambda: finetune_val(cfg, seed, "full_finetune", lr, work))
                record(f"batch 16, {epochs:g} epochs: LoRA lr", base.lora_lr, seed,
                       lambda: finetune_val(cfg, seed, "lora", base.lora_lr, work))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    args.output.write_text(report(rows, base, args))
    print(f"\nwrote {args.output}")
    return 0


def report(rows: list[dict], base: QuickstartConfig, args) -> str:
    """One line per (choice, value): validation top-1 per split seed and their mean."""
    seeds = args.split_seeds
    table: dict = {}
    where: dict = {}
    for r in rows:
        table.setdefault((r["choice"], r["value"]), {})[r["seed"]] = r["val_top1"]
        said = r.get("machine", EARLIER["machine"])
        if "probe" not in r["choice"]:  # fine-tunes: their length and batch
            said += f", {r.get('epochs', EARLIER['epochs']):g} epochs at batch {r.get('batch_size', EARLIER['batch_size'])}"
        where.setdefault(r["choice"], {})[said] = None
    command = "python benchmarks/quickstart_selection.py" + (" --quick" if args.quick else "")
    lines = [
        "# Quickstart choices, scored on validation splits",
        "",
        f"Written by `{command}`. Train: 80% of the digits' train half; validation: the other "
        f"{int(100 * VAL_FRACTION)}% (seeded, stratified; split seeds {', '.join(map(str, seeds))}, 180 images each). "
        "The test split is not loaded. Everything not varied is the quickstart's default at the time of the "
        f"sweep (SGD lr {base.lr} with label smoothing "
        f"{base.label_smoothing}, LoRA AdamW {base.lora_lr}, probe {base.probe_pooling} x {base.probe_blocks} blocks, "
        f"32 px, precision {base.precision}; the fine-tunes' epochs and batch, and the machine, below the table).",
        "",
        "| choice | value | " + " | ".join(f"split {s}" for s in seeds) + " | mean |",
        "|---|---|" + "---|" * (len(seeds) + 1),
    ]
    for (choice, value), scores in table.items():
        cells = [f"{100 * scores[s]:.1f}%" if s in scores else "" for s in seeds]
        mean = sum(scores.values()) / len(scores)
        lines.append(f"| {choice} | {value} | " + " | ".join(cells) + f" | **{100 * mean:.1f}%** |")
    lines.append("")
    for choice, said in where.items():
        lines.append(f"- {choice}: " + "; ".join(said))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
