"""The ViT paper's position-embedding ablation (Appendix D.4, Table 8) on Fashion-MNIST, with this library's loop.

The same small ViT trains from scratch with the same recipe and budget, changing only ``model.scratch.pos_embed``:
none | learned (1-D, today's default) | learned_2d (row + column halves) | sincos_2d (fixed) | relative (a learned
2-D bias per head in each block's attention logits, no absolute table). Three seeds each: 15 runs. The paper found no
position embedding clearly worse (0.614 vs 0.642 for 1-D learned) and the other three within 0.003.

Budget, one for all runs: the shipped pretraining recipe (28 px, patch 4 so a 7x7 grid, batch 256, AdamW, cosine,
label smoothing, flips) on a narrower ViT than its width-192 one (width 96, depth 6, 3 heads, MLP 384: 0.68 M
parameters) for 3 epochs (666 steps), on one torch thread, so that one run takes at most 10 minutes on the 2-core
CPU. Measured with ``--measure-steps 4`` (4 real steps after a warm-up step, validation and test capped at 512
images and scaled to a run's 3,000 + 2 x 10,000 scored images), in CPU seconds of the training process because the
machine was shared (load average ~5) while measured: 0.69 s/step (learned) and 0.72 s/step (relative), 57 s and
41 s of scoring, ~3 s of setup: ~8.6 min per run, so ~2.2 h for all 15. The recipe's width-192 model measured 1.72
CPU-s per step the same way (20.6 min per 3-epoch run): it would get 1.2 epochs in 10 minutes, and a longer schedule
on the smaller model says more about what position information is worth. Two threads on the busy 2-core machine
spun and crawled (2.6 CPU-s per step at width 96), hence ``--threads 1`` (the other core is left free).

Resumable, in chunks: every (variant, seed) run trains in its own folder under ``--work-dir`` (default
``~/.cache/vit-transfer/pos_embed_ablation``; one subfolder per budget, so runs of another budget never mix) with checkpoints every ``--checkpoint-every`` steps and
``train.resume_from_checkpoint: latest``, so a stopped run continues where it was. Each finished run is appended at
once to ``benchmarks/results/pos_embed_ablation.jsonl`` (variant, seed, test and validation top-1, steps, seconds,
machine, commit, budget) and skipped on the next call; ``--max-minutes N`` starts no new run after N minutes (the
run in progress finishes: for a 90-minute chunk pass 80). Every call rebuilds the ``.md``, ``.json`` and figures
from all rows of the current budget; the figures (position-embedding similarity, attention distance) come from
``vit_transfer.diagnostics.inspect_model`` on the saved model of each variant's lowest finished seed.

    apt-get install dataset-fashion-mnist
    python benchmarks/pos_embed_ablation.py --max-minutes 80   # one chunk; repeat until 15 rows; commit the rows
    python benchmarks/pos_embed_ablation.py --measure-steps 8   # time 8 real steps and extrapolate one run
    python benchmarks/pos_embed_ablation.py --smoke             # a few steps on a few images: the plumbing only

Writes benchmarks/results/pos_embed_ablation.{jsonl,md,json} and the figures under
benchmarks/results/pos_embed_ablation/ (``--smoke`` writes everything to a temporary folder instead, never results/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import resumable  # benchmarks/resumable.py: the rows file (benchmarks/ is on sys.path when a script here runs)
from resumable import ResultsFileError, check_fraction, from_list, machine, run_chunk  # noqa: F401 (re-exported)
from vit_transfer.models.pos_embed_kinds import POS_EMBED_KINDS as VARIANTS  # none ... relative

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "pos_embed_ablation"
PAPER = {"none": 0.614, "learned": 0.642}  # Appendix D.4 (2-D learned and relative: within 0.003 of 1-D)
ROW_KEYS = ("variant", "seed", "test_top1", "eval_top1", "steps", "seconds", "machine", "commit", "budget")
DEFAULT_SIZE = {"hidden_size": 96, "depth": 6, "num_heads": 3, "mlp_dim": 384}
DEFAULT_EPOCHS = 3.0
MEASURE_SCORED = 512  # --measure-steps scores this many validation and test images (a whole run: 3,000 and 10,000)
# what the page says of the budget (measured as the module docstring tells)
BUDGET_NOTE = ("measured with `--measure-steps 4` on one thread of the 2-core AMD EPYC (bf16 autocast, eager "
               "attention): 0.69 CPU-s per step (learned), 0.72 (relative), ~1 min scoring 23,000 images, so ~8.6 min "
               "per 666-step run")


# --- the rows file (benchmarks/resumable.py) --------------------------------------------------------------------
def check_row(row: dict) -> "str | None":
    if row["variant"] not in VARIANTS:
        return f"unknown variant {row['variant']!r} (known: {', '.join(VARIANTS)})"
    return check_fraction(row, "test_top1")


def read_rows(path: Path) -> list[dict]:
    """Every row of the results file (none if it does not exist); a malformed line is an error naming it."""
    return resumable.read_rows(path, ROW_KEYS, check_row)


# --- what to run -----------------------------------------------------------------------------------------------
def budget_of(args: argparse.Namespace) -> dict:
    """What must be equal for two runs to be compared (rows of another budget are kept but left out)."""
    if args.smoke:
        return {"smoke": True}
    return {"recipe": "pretrain_fashion_mnist", "hidden_size": args.hidden_size, "depth": args.depth,
            "num_heads": args.num_heads, "mlp_dim": args.mlp_dim, "epochs": args.epochs,
            "train_samples": args.train_samples, "warmup_steps": args.warmup_steps, "precision": args.precision}


def pending(variants, seeds, rows: list[dict], budget: dict) -> list[tuple[str, int]]:
    done = {(r["variant"], r["seed"]) for r in rows if r["budget"] == budget}
    return [(v, s) for v in variants for s in seeds if (v, s) not in done]


def budget_tag(budget: dict) -> str:
    """A short name for a budget: runs of another budget never resume (or stand in for) each other's folders."""
    return hashlib.sha1(json.dumps(budget, sort_keys=True).encode()).hexdigest()[:10]


def run_dir_for(work_dir: Path, budget: dict, variant: str, seed: int) -> Path:
    return work_dir / f"budget-{budget_tag(budget)}" / f"{variant}-seed{seed}"


def recipe_for(variant: str, seed: int, args: argparse.Namespace, run_dir: Path):
    """The shipped pretraining recipe with this run's variant, seed and budget, resuming its own checkpoints."""
    from vit_transfer.config import load_recipe
    from vit_transfer.recipes import resolve_recipe
    from vit_transfer.training import TrainRecipe

    overrides = [f"model.scratch.pos_embed={variant}", f"train.seed={seed}", f"output.dir={run_dir}",
                 "output.log_with=none", "train.resume_from_checkpoint=latest", "train.keep_checkpoints=1",
                 f"train.checkpoint_every={args.checkpoint_every}", f"data.num_workers={args.num_workers}",
                 f"train.precision={args.precision}", "eval.every_steps=null",
                 f"model.scratch.hidden_size={args.hidden_size}", f"model.scratch.depth={args.depth}", f"model.scratch.num_heads={args.num_heads}",
                 f"model.scratch.mlp_dim={args.mlp_dim}"]
    if args.smoke:
        overrides += ["train.max_steps=3", "train.epochs=null", "train.batch_size=16", "schedule.warmup_steps=1",
                      "data.max_train_samples=64", "data.max_eval_samples=32", "data.max_test_samples=32",
                      "model.scratch.depth=2", "train.checkpoint_every=2"]
    else:
        overrides += ["train.max_steps=null", f"train.epochs={args.epochs}"]
        if args.train_samples:
            overrides.append(f"data.max_train_samples={args.train_samples}")
        if args.warmup_steps is not None:
            overrides.append(f"schedule.warmup_steps={args.warmup_steps}")
    return load_recipe(resolve_recipe("pretrain_fashion_mnist"), overrides, TrainRecipe)


def train_run(variant: str, seed: int, args: argparse.Namespace, run_dir: Path) -> dict:
    """Train (or finish) one run with the library's ``train``; its scores, the model left in ``run_dir/model``."""
    from vit_transfer.training import train

    result = train(recipe_for(variant, seed, args, run_dir), command="benchmarks/pos_embed_ablation.py")
    m = result.metrics
    return {"test_top1": m["test_top1"], "eval_top1": m.get("eval_top1"), "steps": m["steps"],
            "test_examples": m.get("test_examples"), "resumed_from": result.resumed_from}


def commit() -> str:
    return resumable.commit(["vit_transfer", "recipes", "benchmarks/pos_embed_ablation.py", "benchmarks/resumable.py"])


def run_pending(args: argparse.Namespace, rows_path: Path, work_dir: Path,
                train_fn: Callable[[str, int, argparse.Namespace, Path], dict] = train_run,
                clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = print) -> list[dict]:
    """Run what the rows file lacks, appending each finished run at once; after ``args.max_minutes`` no new
    run starts. Returns the rows this call added."""
    budget = budget_of(args)
    todo = pending(args.variants, args.seeds, read_rows(rows_path), budget)
    log(f"{len(todo)} run(s) to do: {', '.join(f'{v}/{s}' for v, s in todo) or 'none'}")

    def run_unit(unit: tuple[str, int]) -> dict:
        variant, seed = unit
        run_dir = run_dir_for(work_dir, budget, variant, seed)
        began = clock()
        fields = train_fn(variant, seed, args, run_dir)
        row = {"variant": variant, "seed": seed, **fields, "seconds": round(clock() - began, 1),
               "machine": machine(), "commit": commit(), "budget": budget}
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # finished: model/ stays for the figures
        log(f"{variant} seed {seed}: test top-1 {row['test_top1']:.4f} ({row['seconds']:.0f} s) -> {rows_path.name}")
        return row

    return run_chunk(from_list(todo), run_unit, rows_path, max_minutes=args.max_minutes, clock=clock, log=log,
                     name=lambda unit: f"{unit[0]}/{unit[1]}")


# --- the page, the numbers and the figures ---------------------------------------------------------------------
def summarise(rows: list[dict], variants) -> dict:
    summary = {}
    for variant in variants:
        scores = [r["test_top1"] for r in rows if r["variant"] == variant]
        if scores:
            summary[variant] = {"mean": statistics.mean(scores),
                                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                                "runs": len(scores), "seeds": sorted(r["seed"] for r in rows if r["variant"] == variant)}
    return summary


def inspect_variants(rows: list[dict], budget: dict, work_dir: Path, figures: Path, images_fn: Callable[[], list],
                     log: Callable[[str], None] = print) -> dict:
    """Per variant, ``inspect_model`` on the saved model of its lowest finished seed (kept in ``figures/<variant>``,
    redone only when that model is newer); variants whose model is not on this machine keep earlier figures."""
    diagnostics, images = {}, None
    for variant in sorted({r["variant"] for r in rows}, key=VARIANTS.index):
        seed = min(r["seed"] for r in rows if r["variant"] == variant)
        folder, model_dir = figures / variant, run_dir_for(work_dir, budget, variant, seed) / "model"
        report, source = folder / "inspect.json", folder / "source.json"
        weights = model_dir / "model.safetensors"
        wanted = {"variant": variant, "seed": seed, "budget": budget_tag(budget)}

        def made_from_wanted() -> bool:
            return report.is_file() and source.is_file() and json.loads(source.read_text()) == wanted

        if weights.is_file() and not (made_from_wanted() and weights.stat().st_mtime <= report.stat().st_mtime):
            from vit_transfer import load_vit
            from vit_transfer.diagnostics import inspect_model

            images = images if images is not None else images_fn()
            inspect_model(load_vit(str(model_dir)), images, folder)
            source.write_text(json.dumps(wanted) + "\n")
        if not made_from_wanted():
            log(f"{variant}: no saved model of seed {seed} in {model_dir.parent} and no figures of it yet")
            continue
        entry = json.loads(report.read_text())["models"]["model"]
        sim = entry["pos_embed_similarity"]
        diagnostics[variant] = {"seed": seed, "grid": sim["grid"], "absent": sim.get("absent"),
                                "locality": sim["locality"], "similarity": sim["similarity"],
                                "attention_distance_per_head": entry.get("attention_distance", {}).get("per_head"),
                                "attention_distance_per_block": entry.get("attention_distance", {}).get("per_block"),
                                "uniform_attention": entry.get("attention_distance", {}).get("uniform_attention")}
    return diagnostics


def similarity_title(variant: str, d: dict) -> str:
    if d["absent"]:
        return f"{variant}: no absolute table (bias in attention)"
    if variant == "none":
        return "none: all-zero table (similarity 0)"
    return f"{variant}: locality {d['locality']['locality']:+.2f}"


def draw_figures(diagnostics: dict, figures: Path) -> list[str]:
    import numpy as np

    from vit_transfer.diagnostics.figures import plot_attention_distance, plot_pos_embed_similarity

    drawn = []
    if diagnostics:
        panels = {}
        for variant, d in diagnostics.items():
            gh, gw = d["grid"]
            panels[similarity_title(variant, d)] = (np.full((gh, gw, gh, gw), np.nan) if d["similarity"] is None
                                                    else np.asarray(d["similarity"]))
        plot_pos_embed_similarity(panels, figures / "similarity_all.png")
        drawn.append("similarity_all.png")
    distances = {v: np.asarray(d["attention_distance_per_head"]) for v, d in diagnostics.items()
                 if d["attention_distance_per_head"] is not None}
    if distances:
        plot_attention_distance(distances, figures / "attention_distance_all.png")
        drawn.append("attention_distance_all.png")
    return drawn


def verdict(summary: dict) -> list[str]:
    """What the rows say against the paper's two claims, once every variant has three runs."""
    if set(summary) != set(VARIANTS) or min(s["runs"] for s in summary.values()) < 3:
        return ["Not every variant has three runs yet: no verdict."]
    others = {k: s for k, s in summary.items() if k != "none"}
    best, worst = max(s["mean"] for s in others.values()), min(s["mean"] for s in others.values())
    none = summary["none"]
    spread_std = max(s["std"] for s in others.values())
    lower = none["mean"] + 2 * max(none["std"], spread_std) < worst
    return [f"- `none` vs the others: {100 * none['mean']:.2f}% against {100 * worst:.2f}-{100 * best:.2f}% "
            f"({'clearly lower: more than two seed-stds below every other variant' if lower else 'not clearly lower'}; "
            "paper: 61.4% vs 64.2%).",
            f"- the four with position information span {100 * (best - worst):.2f} points "
            f"(largest seed std {100 * spread_std:.2f}; paper: within 0.3 points)."]


def markdown(payload: dict) -> str:
    b = payload["budget"]
    if b.get("smoke"):
        budget = "smoke run (3 steps, 64 images, depth 2): plumbing only, numbers meaningless"
        command = "python benchmarks/pos_embed_ablation.py --smoke"
    else:
        budget = (f"ViT width {b['hidden_size']}, depth {b['depth']}, {b['num_heads']} heads, MLP {b['mlp_dim']} "
                  "(28 px, patch 4: a 7x7 grid), "
                  f"{b['epochs']:g} epochs per run" + (f" over {b['train_samples']:,} training images"
                                                       if b.get("train_samples") else " over 57,000 training images")
                  + f", precision {b['precision']}")
        command = ("python benchmarks/pos_embed_ablation.py --max-minutes 80"
                   + "".join(f" --{k.replace('_', '-')} {b[k]}" for k, v in DEFAULT_SIZE.items() if b[k] != v)
                   + ("" if b["epochs"] == DEFAULT_EPOCHS else f" --epochs {b['epochs']:g}")
                   + (f" --train-samples {b['train_samples']}" if b.get("train_samples") else "")
                   + (f" --warmup-steps {b['warmup_steps']}" if b.get("warmup_steps") is not None else ""))
    rows = payload["runs"]
    seconds = [r["seconds"] for r in rows]
    test_images = ", ".join(f"{n:,}" for n in sorted({r.get("test_examples") or 10_000 for r in rows})) or "10,000"
    lines = [
        "# Position-embedding ablation (ViT paper, Appendix D.4) on Fashion-MNIST", "",
        f"`{command}`" + ("" if b.get("smoke") else " (repeat until every row is in)")
        + " - recipe `pretrain_fashion_mnist` from scratch, " + budget + ".", "",
        f"Budget: one run at most 10 minutes on the 2-core CPU; {payload['budget_note']}. "
        + (f"The {len(rows)} runs so far took {min(seconds) / 60:.1f}-{max(seconds) / 60:.1f} min each "
           f"on {'; '.join(sorted({r['machine'] for r in rows}))}." if rows else "No run has finished yet."), "",
        f"Rows: `{NAME}.jsonl` ({len(rows)} of {len(VARIANTS) * 3} for this budget"
        + (f"; {payload['other_budget_rows']} row(s) of another budget left out" if payload["other_budget_rows"] else "")
        + f"). Test top-1 on {test_images} test images, mean +- std over seeds; validation top-1 on the images "
        "held out of the training split.", "",
        "| pos_embed | test top-1 | validation top-1 | runs (seeds) | locality | mean attention distance, first -> last block (px) |",
        "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        s = payload["summary"].get(variant)
        if s is None:
            lines.append(f"| {variant} | not run yet | | 0 | | |")
            continue
        evals = [r["eval_top1"] for r in rows if r["variant"] == variant and r.get("eval_top1") is not None]
        d = payload["diagnostics"].get(variant)
        per_block = (d or {}).get("attention_distance_per_block") or []
        distance = f"{per_block[0]:.1f} -> {per_block[-1]:.1f} (seed {d['seed']})" if per_block else ""
        if d is None:
            loc = ""
        elif d["absent"]:
            loc = "no table"
        elif variant == "none":
            loc = "zero table"
        else:
            loc = f"{d['locality']['locality']:+.3f}"
        val = f"{100 * statistics.mean(evals):.2f}%" if evals else ""
        lines.append(f"| {variant} | {100 * s['mean']:.2f}% +- {100 * s['std']:.2f} | {val} | {s['runs']} "
                     f"({', '.join(map(str, s['seeds']))}) | {loc} | {distance} |")
    lines += ["", "The paper (Appendix D.4, Table 8: ViT-B/16, ImageNet 5-shot linear): no position embedding 0.614 vs 0.642 for 1-D "
              "learned; 2-D learned and relative within 0.003 of 1-D. Here:", ""] + verdict(payload["summary"]) + [
        "", "`none` trains an all-zero table (its similarity is 0 everywhere by definition) and `relative` has no "
        "absolute table at all (a learned bias per head and 2-D offset in each block's attention logits), so their "
        "similarity panels are blank; their attention distances are measured like the others'.", "",
        "Figures (one model per variant, its lowest seed, from `vit_transfer.diagnostics.inspect_model` on 16 test "
        "images): " + (", ".join(f"`{NAME}/{f}`" for f in payload["figures"]) or "none yet")
        + "; each variant's own `inspect` output in `" + NAME + "/<variant>/`.", ""]
    return "\n".join(lines)


def rebuild(args: argparse.Namespace, out: Path, work_dir: Path, images_fn: Callable[[], list],
            log: Callable[[str], None] = print) -> dict:
    """The ``.json``, ``.md`` and figures from every row of the current budget."""
    all_rows = read_rows(out / f"{NAME}.jsonl")
    budget = budget_of(args)
    rows = [r for r in all_rows if r["budget"] == budget]
    figures = out / NAME
    figures.mkdir(parents=True, exist_ok=True)
    diagnostics = inspect_variants(rows, budget, work_dir, figures, images_fn, log)
    payload = {"budget": budget, "budget_note": BUDGET_NOTE, "summary": summarise(rows, VARIANTS), "runs": rows,
               "other_budget_rows": len(all_rows) - len(rows), "paper_table_8": PAPER,
               "figures": draw_figures(diagnostics, figures),
               "diagnostics": {k: {kk: vv for kk, vv in d.items() if kk != "similarity"} for k, d in diagnostics.items()}}
    (out / f"{NAME}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (out / f"{NAME}.md").write_text(markdown(payload))
    log(f"wrote {out / (NAME + '.md')}")
    return payload


def inspection_images(count: int) -> list:
    from vit_transfer.data import DataConfig, load_image_datasets

    test = load_image_datasets(DataConfig(source="fashion-mnist", num_workers=0, test_split="test")).test
    return [test[i][0] for i in range(count)]


# --- the budget ------------------------------------------------------------------------------------------------
def measure(args: argparse.Namespace, steps: int, log: Callable[[str], None] = print) -> dict:
    """Time ``steps`` real training steps per variant (after one warm-up step) and extrapolate one whole run.

    A run is its steps, what comes before them (data, model, setup: timed as is) and what comes after (the
    validation split scored once, the test split twice: by the loop and by the evaluation report, then saving).
    The short run scores only ``MEASURE_SCORED`` images of each split, so the time after the steps is scaled by
    the images a whole run scores. Wall seconds and this process's CPU seconds are both given, with the load.
    """
    from vit_transfer.training import train

    found = {}
    for variant in args.variants:
        full = recipe_for(variant, 0, args, Path(tempfile.gettempdir()) / "unused")
        run_steps = math.ceil(args.epochs * (len_train_split(full) // full.train.batch_size))
        stamps: list[tuple[float, float]] = []
        with tempfile.TemporaryDirectory(prefix="pos_embed_measure_") as folder:
            short = recipe_for(variant, 0, args, Path(folder))
            short.train.max_steps, short.train.epochs, short.train.checkpoint_every = steps + 1, None, None
            short.data.max_eval_samples = short.data.max_test_samples = MEASURE_SCORED
            now = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
            began = now()
            train(short, hooks=[lambda state: stamps.append(now())])
            ended = now()
        row = {"variant": variant, "steps_timed": len(stamps) - 1, "run_steps": run_steps,
               "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
        for k, clock in enumerate(("wall", "cpu")):
            step = statistics.median(b[k] - a[k] for a, b in zip(stamps, stamps[1:]))
            before = stamps[0][k] - began[k] - step  # the warm-up step counts as a plain step
            after = (ended[k] - stamps[-1][k]) * (3_000 + 2 * 10_000) / (3 * MEASURE_SCORED)
            row[clock] = {"seconds_per_step": round(step, 3), "before_steps": round(before, 1),
                          "after_steps": round(after, 1), "run_minutes": round((before + run_steps * step + after) / 60, 1)}
        found[variant] = row
        log(json.dumps(row))
    return found


def len_train_split(recipe) -> int:
    """Training images of the recipe's split: Fashion-MNIST's 60,000 less the validation fraction, or the cap."""
    total = round(60_000 * (1 - recipe.data.val_fraction))
    return min(total, recipe.data.max_train_samples or total)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=DEFAULT_SIZE["hidden_size"], help="the ViT's width")
    parser.add_argument("--depth", type=int, default=DEFAULT_SIZE["depth"], help="transformer blocks")
    parser.add_argument("--num-heads", type=int, default=DEFAULT_SIZE["num_heads"], help="attention heads")
    parser.add_argument("--mlp-dim", type=int, default=DEFAULT_SIZE["mlp_dim"], help="the blocks' MLP width")
    parser.add_argument("--epochs", type=float, default=DEFAULT_EPOCHS, help="training epochs per run (all runs)")
    parser.add_argument("--train-samples", type=int, default=None,
                        help="train on this many images (stratified, seeded) instead of all 57,000: a smaller budget")
    parser.add_argument("--warmup-steps", type=int, default=None, help="the schedule's warm-up (default: the recipe's 200)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--precision", default="auto", choices=["no", "bf16", "fp16", "auto"])
    parser.add_argument("--num-workers", type=int, default=0, help="data workers (0: in the training process, faster here)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: what the budget was measured with; immune to a busy machine)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="optimiser steps between in-run checkpoints")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no new run after this many minutes (the run in progress finishes)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where each run trains and keeps its checkpoints and model "
                             "(default: ~/.cache/vit-transfer/pos_embed_ablation; --smoke: a temporary folder)")
    parser.add_argument("--inspect-images", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="a few steps on a few images, all in a temp folder")
    parser.add_argument("--measure-steps", type=int, default=None,
                        help="only time this many real steps of one run and print the extrapolated run time")
    parser.add_argument("--output", type=Path, help="where the rows, .md/.json and figures go (default benchmarks/results)")
    return parser


def default_work_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vit-transfer" / NAME


def main(argv: list[str] | None = None, train_fn: Callable = train_run, images_fn: Callable[[], list] | None = None,
         clock: Callable[[], float] = time.monotonic) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.measure_steps:
        measure(args, args.measure_steps)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="pos_embed_ablation_")) if args.smoke else None
    out = args.output or (scratch if args.smoke else RESULTS)
    work_dir = args.work_dir or (scratch / "runs" if args.smoke else default_work_dir())
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work_dir}, rows in {out / (NAME + '.jsonl')}")
    run_pending(args, out / f"{NAME}.jsonl", work_dir, train_fn=train_fn, clock=clock)
    rebuild(args, out, work_dir, images_fn or (lambda: inspection_images(4 if args.smoke else args.inspect_images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
