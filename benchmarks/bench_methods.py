"""The method menu, V-PETL style, on the offline proxy: the shipped Fashion-MNIST ViT -> digits at 32 px.

Two settings, as VTAB-1k's "few labels" question asks: the full training half of digits, and 10 images
per class. For every seed a validation split (20%, stratified) is carved from the training half; the
10-per-class set is drawn from what remains. Each method's learning rate is chosen on seed 0's
validation split from a small grid (the test split is never used to choose); the chosen rate then runs
with every seed and the test split is scored once per run. Every run goes through ``vit_transfer.train``
(the real recipe path, LP-FT included) in a fresh process, so its peak memory is its own.

    python benchmarks/bench_methods.py              # writes benchmarks/results/methods.md (and .json)
    python benchmarks/bench_methods.py --smoke      # 2 steps per run, one seed: the plumbing only

Reported: test top-1 mean +- std over seeds, the validation top-1 that chose the rate, trainable
parameters, training seconds, and peak RSS growth of the training process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "methods.md"
MODEL = "vit-transfer/fashion-vit-tiny"

SGD = {"name": "sgd", "momentum": 0.9, "clip_grad_norm": 1.0}
ADAMW = {"name": "adamw", "weight_decay": 0.0, "clip_grad_norm": 1.0}
# name -> (recipe sections, optimiser, learning-rate grid)
METHODS = {
    "full fine-tune": ({"method": "full"}, SGD, [0.03, 0.06]),
    "LP-FT (full, head from the probe)": ({"method": "full", "model": {"head_init": "probe"}}, SGD, [0.01, 0.03]),
    "head only": ({"method": "head"}, ADAMW, [0.01, 0.03]),
    "BitFit": ({"method": "bitfit"}, ADAMW, [0.003, 0.01]),
    "LayerNorm tuning": ({"method": "norm"}, ADAMW, [0.003, 0.01]),
    "LoRA r=8": ({"method": "lora", "lora": {"r": 8, "alpha": 16}}, ADAMW, [0.003, 0.01]),
    "DoRA r=8": ({"method": "lora", "lora": {"r": 8, "alpha": 16, "use_dora": True}}, ADAMW, [0.003, 0.01]),
    "SSF": ({"method": "ssf"}, ADAMW, [0.003, 0.01]),
    "VPT-shallow (10)": ({"method": "vpt", "vpt": {"tokens": 10}}, ADAMW, [0.01, 0.03]),
    "VPT-deep (10)": ({"method": "vpt", "vpt": {"tokens": 10, "deep": True}}, ADAMW, [0.01, 0.03]),
    "IA3 (peft)": ({"method": "peft", "peft": {"peft_type": "IA3"}}, ADAMW, [0.003, 0.01]),
}
SETTINGS = {"full data": None, "10 per class": 10}


# --- data: one image folder per (seed, setting), so every run reads its splits the normal way ---------------
def write_splits(root: Path, seed: int, per_class: "int | None") -> Path:
    """digits' train half -> ``train``/``validation`` (20% stratified, seeded), test half -> ``test``, as PNGs."""
    import numpy as np

    from vit_transfer.data import DataConfig, load_image_datasets
    from vit_transfer.data.splits import stratified_split

    data = load_image_datasets(DataConfig(source="sklearn:digits", eval_split="none", test_split="test", split_seed=0))
    keep, val = stratified_split(data.train.labels, 0.2, seed)
    if per_class:
        rng = np.random.default_rng(seed)
        labels = data.train.labels[keep]
        keep = np.concatenate([rng.choice(keep[labels == c], per_class, replace=False)
                               for c in range(data.num_labels)])
    for split, dataset, indices in (("train", data.train, keep), ("validation", data.train, val),
                                    ("test", data.test, range(len(data.test)))):
        for i in indices:
            image, label = dataset[int(i)]
            folder = root / split / f"{int(label)}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{int(i):05d}.png")
    return root


# --- one run, in a fresh process -------------------------------------------------------------------------------
def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(job: dict, queue) -> None:
    import torch

    from vit_transfer.training import load_train_recipe, train

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(job["threads"])
    sections, optim, lr = METHODS[job["method"]][0], METHODS[job["method"]][1], job["lr"]
    recipe = {
        "model": {"source": MODEL, "image_size": 32, "attention": "eager", **sections.get("model", {})},
        "data": {"source": job["folder"], "num_workers": 0},
        "augment": {"crop": "resize", "hflip": False, "label_smoothing": 0.1},
        "method": sections["method"],
        "optim": {**optim, "lr": lr},
        "schedule": {"name": "cosine", "warmup_steps": min(20, job["steps"] - 1)},
        "train": {"max_steps": job["steps"], "batch_size": 32, "precision": "auto", "seed": job["seed"],
                  "log_every": 10**6},
        "output": {"dir": job["out"], "log_with": "none"},
        **{k: v for k, v in sections.items() if k not in ("method", "model")},
    }
    path = Path(job["out"] + ".yaml")
    path.write_text(json.dumps(recipe))
    before = rss_mib()
    started = time.perf_counter()
    metrics = train(load_train_recipe(path)).metrics
    queue.put({**job, "val_top1": metrics.get("eval_top1"), "test_top1": metrics.get("test_top1"),
               "trainable_parameters": metrics["trainable_parameters"],
               "trainable_percent": metrics["trainable_percent"], "train_seconds": metrics.get("train_seconds"),
               "seconds": time.perf_counter() - started,
               "memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before})


def run(job: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_one, args=(job, queue))
    proc.start()
    try:
        result = queue.get(timeout=3600)
    except Exception as exc:
        result = {**job, "error": f"{type(exc).__name__}: {exc}"}
    proc.join()
    print(f"  {job['setting']:13s} {job['method']:36s} lr {job['lr']:<6g} seed {job['seed']}: "
          f"val {result.get('val_top1') or float('nan'):.3f} test {result.get('test_top1') or float('nan'):.3f} "
          f"({result.get('seconds', float('nan')):.0f} s)", flush=True)
    return result


def probe_row(folder: str, seed: int) -> dict:
    """The linear probe (the library's, C chosen on a slice of train) on the same splits, for comparison."""
    from vit_transfer.data import DataConfig, load_image_datasets
    from vit_transfer.models import load_vit
    from vit_transfer.probe import ProbeConfig, probe_model

    data = load_image_datasets(DataConfig(source=folder, num_workers=0))
    model = load_vit(MODEL, image_size=32)
    started = time.perf_counter()
    # the quickstart's probe (cls+mean of the last 6 blocks, chosen on validation there): the strong baseline
    config = ProbeConfig(fewshot=False, cache=False, pooling="cls+mean", last_n=6)
    result = probe_model(model, data, config, seed=seed, progress=False)
    return {"val_top1": result.linear.val_top1, "test_top1": result.linear.top1, "seconds": time.perf_counter() - started,
            "trainable_parameters": (model.feature_dim("cls+mean", 6) + 1) * data.num_labels}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=120, help="optimiser steps per run (batch 32), every method")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD")
    p.add_argument("--smoke", action="store_true", help="2 steps, one seed, one rate: the plumbing only (temp output)")
    p.add_argument("--output", type=Path, default=RESULTS)
    return p


def main(argv: "list[str] | None" = None) -> None:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.seeds, args.steps = args.seeds[:1], 2
        args.output = Path(tempfile.mkdtemp(prefix="bench-methods-")) / "methods.md"
    work = Path(tempfile.mkdtemp(prefix="bench-methods-data-"))
    folders = {(s, name): str(write_splits(work / f"{name.replace(' ', '_')}-{s}", s, k))
               for s in args.seeds for name, k in SETTINGS.items()}
    table: dict = {}
    for setting in SETTINGS:
        for method in args.methods:
            grid = METHODS[method][2][:1] if args.smoke else METHODS[method][2]
            base = {"setting": setting, "method": method, "steps": args.steps, "threads": args.threads}
            first = [run({**base, "lr": lr, "seed": args.seeds[0], "folder": folders[(args.seeds[0], setting)],
                          "out": str(work / f"run-{len(table)}-{lr}")}) for lr in grid]
            ok = [r for r in first if "error" not in r]
            best = max(ok, key=lambda r: r["val_top1"]) if ok else first[0]
            runs = [best] + [run({**base, "lr": best["lr"], "seed": s, "folder": folders[(s, setting)],
                                  "out": str(work / f"run-{len(table)}-s{s}")}) for s in args.seeds[1:]]
            table[(setting, method)] = {"grid": first, "runs": runs}
        probes = [probe_row(folders[(s, setting)], s) for s in args.seeds]
        table[(setting, "linear probe")] = {"grid": [], "runs": probes}
    write_report(table, args)


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_report(table: dict, args) -> None:
    import torch

    import shlex

    chosen = "" if args.methods == list(METHODS) else " --methods " + " ".join(shlex.quote(m) for m in args.methods)
    lines = ["# Transfer methods on the offline proxy (shipped Fashion-MNIST ViT -> digits, 32 px)", "",
             f"`python benchmarks/bench_methods.py --steps {args.steps} --seeds {' '.join(map(str, args.seeds))} "
             f"--threads {args.threads}{chosen}`", "",
             f"Every run: {args.steps} steps at batch 32, cosine schedule, label smoothing 0.1, bf16 where native, "
             f"{args.threads} threads, torch {torch.__version__}. Learning rate chosen per method on seed "
             f"{args.seeds[0]}'s validation split (20% of the training half, stratified) from the grid shown; "
             "test = digits' fixed test half (899 images), scored once per run. Mean +- std over seeds "
             f"{', '.join(map(str, args.seeds))}. Memory: peak RSS growth of the training process (CPU).", ""]
    results = {}
    for setting in SETTINGS:
        full = table.get((setting, "full fine-tune"))
        full_mean = _mean_std([r.get("test_top1") for r in full["runs"]])[0] if full else float("nan")
        full_params = full["runs"][0].get("trainable_parameters") if full else None
        lines += [f"## {setting}", "",
                  "| method | test top-1 (mean +- std) | vs full | val top-1 (chosen) | lr (grid) | trainable | "
                  "% of full | train s | memory MiB |", "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
        for (s, method), entry in table.items():
            if s != setting:
                continue
            runs = entry["runs"]
            mean, std = _mean_std([r.get("test_top1") for r in runs])
            first = runs[0]
            grid = ", ".join(f"{r['lr']:g}: {r.get('val_top1', float('nan')):.3f}" for r in entry["grid"]) or "-"
            params = first.get("trainable_parameters") or 0
            share = f"{100 * params / full_params:.2f}%" if full_params else "-"
            lines.append(f"| {method} | {100 * mean:.1f} +- {100 * std:.1f} | {100 * (mean - full_mean):+.1f} | "
                         f"{100 * (first.get('val_top1') or float('nan')):.1f} | "
                         f"{first.get('lr', '-')} ({grid}) | {params:,} | {share} | "
                         f"{_mean_std([r.get('train_seconds') or r.get('seconds') for r in runs])[0]:.0f} | "
                         f"{_mean_std([r.get('memory_mib') for r in runs])[0]:.0f} |")
            results[f"{setting} / {method}"] = entry
        lines.append("")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
