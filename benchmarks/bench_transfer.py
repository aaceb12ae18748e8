"""The transfer table, done fairly: every method, the probes and ``auto`` on the same images, rates chosen on validation.

The shipped model (``vit-transfer/fashion-vit-tiny``) at 32 px on three settings: digits' training half, digits at
10 images per class, and scikit-image's ``lfw_subset`` (200 face / non-face images, 25x25 grey). Per seed, one image
folder holds the splits every row reads: the test split is fixed (digits' test half; a seeded 25% of lfw), the
validation split is carved from the training images (20%, stratified, seeded by the seed), and the 10-per-class
set is drawn from what remains. So every method, the probes and ``auto`` see exactly the same training images.

Rows (``METHODS``): full fine-tune, LP-FT (full, ``model.head_init: probe``), head-only, LoRA r=8, BitFit, SSF, all
with random-resized crops (0.35-1) and flips, and the full fine-tune with plain resizing (auto's two augmentations), each
through ``vit_transfer.train`` with keep-best (the default with a validation split), sized in epochs, at every rate
of a half-decade ladder (1, 3, 10, 30 x 1e-3 ...); when the rate with the best mean validation top-1 over seeds sits
on the grid's edge, the grid grows by one rung on that side (once; not when every rate scores the same). The rate
is chosen on the mean validation top-1 over seeds; the test split is scored once per run. Besides: the class-token
probe (LP-FT's start: class token of the last block, C chosen on validation, fitted on train), the best probe of ``auto``'s sweep
(``sweep_probes``: pooling x blocks x C on validation, its search fit on train only), both scored on test as the
model ``auto`` returns when its probe wins (the probe as the head, through ``evaluate``), and ``auto`` at two
budgets.

Resumable (``benchmarks/resumable.py``): the unit of work is one (setting, seed, method, rate) run, one probe, or
one (setting, seed, auto budget) run; each is appended to ``benchmarks/results/transfer.jsonl`` as soon as it ends
and skipped on the next call; ``--max-minutes N`` starts no new unit after N minutes. Every call rebuilds
``transfer.md`` and ``transfer.json`` from all rows (rows of another protocol, e.g. other epochs, are left out).

    pip install -e ".[bench]"                                    # scikit-image, for lfw_subset
    python benchmarks/bench_transfer.py --max-minutes 60          # one chunk; repeat until done; commit the rows
    python benchmarks/bench_transfer.py --settings lfw --methods LP-FT full
    python benchmarks/bench_transfer.py --no-auto --max-minutes 30 # fine-tunes and probes only (auto: alone later)
    python benchmarks/bench_transfer.py --smoke                   # tiny: the plumbing only, into a temp folder

Time (one torch thread, the default, on the shared 2-core AMD EPYC, load ~2): ``--smoke`` (57 units on 5 images a
class) took 2 min 24 s, ~1.5 s a unit, nearly all of it the fixed cost of a run (loading, test pass, saving). Single
full-size units timed the same day: digits-full, 1 epoch of ``full`` (22 steps): 13 s, of which 5.5 s training and
~8 s fixed (the 899-image test pass, loading, saving); digits-10, 5 epochs of LoRA: 11 s; lfw, 5 epochs of LP-FT:
6 s; the probe sweep 18 / 6 / 2 s. So a run takes ~60 s on digits-full (10 epochs, 220 steps), ~25 s on digits-10
(30 epochs, 90 steps) and ~20 s on lfw (20 epochs, 60 steps); with 6 methods x 4 rates x 3 seeds = 72 runs per
setting plus ~9 for grids that grow, that is ~80 + 35 + 27 min of fine-tunes, ~3 min of probes and 36 min of auto
(3 settings x 3 seeds x (60 + 180) s): **about 3 hours in all**, three chunks of ``--max-minutes 60``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import resumable  # benchmarks/resumable.py (benchmarks/ is on sys.path when a script here runs)
from resumable import ResultsFileError, check_fraction, machine, run_chunk  # noqa: F401 (ResultsFileError: re-exported)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "transfer"
MODEL = "vit-transfer/fashion-vit-tiny"
IMAGE_SIZE = 32
BATCH_SIZE = 32
MAX_EXTENSIONS = 1  # rungs a grid may grow by, in all, when its pick sits on an edge
INSTALL_SKIMAGE = 'scikit-image is needed for the lfw setting: pip install -e ".[bench]" (or pip install scikit-image)'


@dataclass(frozen=True)
class Setting:
    title: str
    source: str  # "digits" | "lfw"
    per_class: "int | None"  # training images per class (None: all)
    epochs: float  # default run length; --epochs overrides every setting's


SETTINGS = {
    "digits-full": Setting("digits, full training half", "digits", None, 10),
    "digits-10": Setting("digits, 10 images per class", "digits", 10, 30),
    "lfw": Setting("scikit-image lfw_subset (face / non-face)", "lfw", None, 20),
}


@dataclass(frozen=True)
class Method:
    """One row of the table: the recipe's ``method`` and what it sets, its optimiser and starting rate grid."""

    method: str
    optimizer: str
    grid: tuple[float, ...]
    head_init: str = "zeros"
    lora: dict = field(default_factory=dict)
    augment: str = "crop-flip"  # vit_transfer.autoselect.augment.AUGMENTS: auto's two choices


METHODS = {  # SGD for the full fine-tunes (the ViT paper's transfer optimiser), AdamW for the others, as auto does
    "full": Method("full", "sgd", (0.003, 0.01, 0.03, 0.1)),
    "LP-FT": Method("full", "sgd", (0.001, 0.003, 0.01, 0.03), head_init="probe"),
    "head-only": Method("head", "adamw", (0.003, 0.01, 0.03, 0.1)),
    "LoRA r=8": Method("lora", "adamw", (0.001, 0.003, 0.01, 0.03), lora={"r": 8, "alpha": 16, "merge": True}),
    "BitFit": Method("bitfit", "adamw", (0.001, 0.003, 0.01, 0.03)),
    "SSF": Method("ssf", "adamw", (0.001, 0.003, 0.01, 0.03)),
    # the full fine-tune with auto's other augmentation (plain resizing, no flips): what the augmentation costs
    "full (resize)": Method("full", "sgd", (0.003, 0.01, 0.03, 0.1), augment="resize"),
}
PROBES = ("class-token probe", "best probe sweep")
AUTO_BUDGETS = (60.0, 180.0)
SMOKE = {"per_class": {"train": 5, "validation": 3, "test": 5}, "batch_size": 8, "budgets": (10.0, 20.0),
         "epochs": 1.0}
ROW_KEYS = ("kind", "setting", "seed", "method", "lr", "val_top1", "test_top1", "seconds", "protocol")


# --- the rate grid -----------------------------------------------------------------------------------------------
def ladder(rate: float, direction: int) -> float:
    """The next rung of the half-decade ladder 1, 3, 10, 30, ... x 10^k above (+1) or below (-1) ``rate``."""
    exponent = math.floor(math.log10(rate) + 1e-9)
    mantissa = rate / 10 ** exponent
    rungs = [1.0, 3.0, 10.0]
    if direction > 0:
        up = next(r for r in rungs if r > mantissa * (1 + 1e-6))
        return float(f"{up * 10 ** exponent:.3g}")
    down = 3.0 * 10 ** (exponent - 1) if mantissa < 3 * (1 - 1e-6) else 1.0 * 10 ** exponent
    return float(f"{down:.3g}")


def pick_rate(mean_val: dict[float, float]) -> float:
    """The rate with the best mean validation top-1 (ties: the smaller rate)."""
    return max(sorted(mean_val), key=lambda lr: (mean_val[lr], -lr))


def edge_side(grid: list[float], mean_val: dict[float, float]) -> int:
    """Where the pick sits: -1 on the grid's low edge, +1 on its high edge, 0 inside it, or when every rate scores
    the same (a flat curve: LP-FT returning its start at every rate has no edge to grow from)."""
    grid = sorted(grid)
    if len({mean_val[lr] for lr in grid}) == 1:
        return 0
    best = pick_rate({lr: mean_val[lr] for lr in grid})
    return -1 if best == grid[0] else 1 if best == grid[-1] else 0


def extend_grid(grid: list[float], mean_val: dict[float, float]) -> list[float]:
    """``grid`` grown by one rung beyond the pick when the pick sits on an edge (``edge_side``); unchanged otherwise."""
    grid, side = sorted(grid), edge_side(grid, mean_val)
    if side < 0:
        return [ladder(grid[0], -1)] + grid
    if side > 0:
        return grid + [ladder(grid[-1], +1)]
    return grid


def mean_val_by_rate(rows: list[dict], seeds: list[int]) -> dict[float, float]:
    """Per rate that has a row for every seed: the mean validation top-1 over the seeds."""
    found: dict[float, dict[int, float]] = {}
    for r in rows:
        found.setdefault(r["lr"], {})[r["seed"]] = r["val_top1"]
    return {lr: statistics.mean(by_seed[s] for s in seeds) for lr, by_seed in found.items()
            if all(s in by_seed for s in seeds)}


def plan_grid(base: list[float], rows: list[dict], seeds: list[int],
              max_extensions: int = MAX_EXTENSIONS) -> tuple[list[float], list[tuple[float, int]]]:
    """(the grid as far as the rows decide it, the (rate, seed) runs it still lacks).

    ``rows`` are one method's rows of one setting. The base grid runs first; once every rate has every seed, the
    pick decides whether the grid grows (``extend_grid``), up to ``max_extensions`` times.
    """
    grid = sorted(base)
    done = {(r["lr"], r["seed"]) for r in rows}
    for extensions in range(max_extensions + 1):
        missing = [(lr, s) for lr in grid for s in seeds if (lr, s) not in done]
        if missing or extensions == max_extensions:
            return grid, missing
        grown = extend_grid(grid, mean_val_by_rate(rows, seeds))
        if grown == grid:
            return grid, []
        grid = grown
    return grid, []


# --- the data: one image folder per (setting, seed) ---------------------------------------------------------------
def source_images(source: str) -> tuple[list, "object", list, "object", list[str]]:
    """(train images, train labels, test images, test labels, class names) of a source, test split fixed."""
    import numpy as np

    if source == "digits":
        from vit_transfer.data import DataConfig, load_image_datasets

        data = load_image_datasets(DataConfig(source="sklearn:digits", eval_split="none", test_split="test",
                                              split_seed=0, num_workers=0))
        train = [data.train[i][0] for i in range(len(data.train))]
        test = [data.test[i][0] for i in range(len(data.test))]
        names = [data.id2label[i] for i in range(data.num_labels)]
        return train, np.asarray(data.train.labels), test, np.asarray(data.test.labels), names
    if source == "lfw":
        from PIL import Image

        from vit_transfer.data.splits import stratified_split

        try:
            from skimage import data as skdata
        except ImportError as exc:
            raise SystemExit(INSTALL_SKIMAGE) from exc
        faces = skdata.lfw_subset()  # (200, 25, 25) floats in [0, 1]: the first 100 faces, the next 100 not
        images = [Image.fromarray((255 * f).round().astype(np.uint8), mode="L") for f in faces]
        labels = np.array([0] * 100 + [1] * 100)
        keep, test = stratified_split(labels, 0.25, seed=0)  # the fixed test split: 50 images
        return ([images[i] for i in keep], labels[keep], [images[i] for i in test], labels[test], ["face", "non-face"])
    raise ValueError(f"unknown source {source!r}")


def write_splits(root: Path, setting: Setting, seed: int, smoke: bool = False) -> Path:
    """``root/{train,validation,test}/<class>/*.png``: validation 20% of the training images (stratified, seeded by
    ``seed``), the per-class set drawn from the rest, the test split fixed. ``smoke`` keeps a few images a class."""
    import numpy as np

    from vit_transfer.data.splits import stratified_split

    if (root / "done").is_file():
        return root
    train, train_labels, test, test_labels, names = source_images(setting.source)
    keep, val = stratified_split(train_labels, 0.2, seed)
    rng = np.random.default_rng(seed)

    def draw(indices, labels, count):
        return np.concatenate([rng.permutation(indices[labels[indices] == c])[:count]
                               for c in range(len(names))]) if count else indices

    keep = draw(keep, train_labels, setting.per_class)
    splits = {"train": (train, train_labels, keep), "validation": (train, train_labels, val),
              "test": (test, test_labels, np.arange(len(test)))}
    for split, (images, labels, indices) in splits.items():
        if smoke:
            indices = draw(np.asarray(indices), labels, SMOKE["per_class"][split])
        for i in sorted(int(i) for i in indices):
            folder = root / split / names[int(labels[i])]
            folder.mkdir(parents=True, exist_ok=True)
            images[i].save(folder / f"{i:05d}.png")
    (root / "done").write_text("")
    return root


def count_images(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.png"))


# --- the units of work ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    kind: str  # "run" | "probe" | "auto"
    setting: str
    seed: int
    method: str  # a METHODS key, a PROBES name, or "auto"
    lr: "float | None" = None  # runs: the rate; auto: the budget in seconds

    def __str__(self) -> str:
        what = {"run": f" lr {self.lr:g}", "auto": f" budget {self.lr:g} s"}.get(self.kind, "") if self.lr else ""
        return f"{self.setting} seed {self.seed} {self.method}{what}"


# the probes since the sweep returns its search fit (not a cold refit) and reads up to 8 blocks, and the probe rows
# are scored as the model auto returns (the probe as its head, through vit_transfer.inference.evaluate)
PROBE_VERSION = "search-fit, blocks 1-8, scored as a model"


def precision() -> str:
    """What ``precision: auto`` runs in here, in the probe's names: bf16 where the hardware runs it natively (a GPU,
    a CPU with bf16 units), else fp32 (``vit_transfer.precision``)."""
    from vit_transfer.precision import probe_precision, resolve_precision

    return probe_precision(resolve_precision("auto"))


def protocol(args: argparse.Namespace, setting: str, kind: str, method: "str | None" = None) -> dict:
    """What must be equal for two rows to be compared (a row of another protocol is kept but left out).

    ``method``: a run's METHODS key; a method that starts from a probe (LP-FT) also carries the probe's version.
    Probe and auto rows carry their precision: the targets compare them with each other and with LP-FT, so they are
    measured in one precision. LP-FT's protocol does not carry it (its rows here are fp32 but two of digits-full's,
    which equal their fp32 repeats at the other rates; the page's "Measured on" names both machines; making it part
    of the protocol would re-run them, ~1 h), nor do the other fine-tunes' (hours)."""
    base = {"model": MODEL, "image_size": IMAGE_SIZE, "smoke": bool(args.smoke)}
    if kind == "run":
        base.update(epochs=epochs_of(args, setting), batch_size=batch_size(args))
        if method in METHODS and METHODS[method].head_init == "probe":
            base.update(probe=PROBE_VERSION)
    if kind == "auto":  # since auto chooses its fine-tunes' augmentation (autoselect/augment.py); rows before: none
        base.update(auto_augment="duel", probe=PROBE_VERSION, auto_sweep_share="all when no fine-tune fits",
                    auto_sweep_order="richest first", auto_lp_ft_start="best probe", precision=precision())
    if kind == "probe":
        base.update(probe=PROBE_VERSION, precision=precision())
    return base


def epochs_of(args: argparse.Namespace, setting: str) -> float:
    return float(args.epochs if args.epochs is not None else SETTINGS[setting].epochs)


def batch_size(args: argparse.Namespace) -> int:
    return SMOKE["batch_size"] if args.smoke else BATCH_SIZE


def budgets_of(args: argparse.Namespace) -> tuple[float, ...]:
    return tuple(args.budgets) if args.budgets else (SMOKE["budgets"] if args.smoke else AUTO_BUDGETS)


def grids_of(args: argparse.Namespace) -> dict[str, list[float]]:
    """Each method's starting grid (the smoke run: its two middle rates)."""
    return {m: (list(METHODS[m].grid[1:3]) if args.smoke else list(METHODS[m].grid)) for m in args.methods}


def matching(rows: list[dict], args, setting: str, kind: str, method: "str | None" = None) -> list[dict]:
    wanted = protocol(args, setting, kind, method)
    return [r for r in rows if r["setting"] == setting and r["kind"] == kind and r["protocol"] == wanted
            and (method is None or r["method"] == method) and r["seed"] in args.seeds]


def plan(args: argparse.Namespace, rows: list[dict]) -> tuple[list[Unit], dict]:
    """(every unit the rows lack, in order; the grid of every (setting, method) as far as the rows decide it)."""
    todo, grids = [], {}
    for setting in args.settings:
        probes = {(r["method"], r["seed"]) for r in matching(rows, args, setting, "probe")}
        todo += [Unit("probe", setting, s, p) for p in PROBES for s in args.seeds if (p, s) not in probes]
        for method, base in grids_of(args).items():
            grid, missing = plan_grid(base, matching(rows, args, setting, "run", method), args.seeds,
                                      0 if args.no_extend else MAX_EXTENSIONS)
            grids[(setting, method)] = grid
            todo += [Unit("run", setting, s, method, lr) for lr, s in missing]
        autos = {(r["lr"], r["seed"]) for r in matching(rows, args, setting, "auto")}
        budgets = () if getattr(args, "no_auto", False) else budgets_of(args)
        todo += [Unit("auto", setting, s, "auto", b) for b in budgets for s in args.seeds if (b, s) not in autos]
    return todo, grids


def fine_tune_recipe(method: str, lr: float, folder: Path, out: Path, seed: int, epochs: float, batch: int):
    """The ``vit-transfer train`` recipe of one run: auto's candidate recipe (autoselect/candidates.py: the row's
    augmentation, crop-flip unless named, cosine with 10% warm-up) sized in epochs, keep-best on (the default with a
    validation split); no label smoothing (auto's own plain full fine-tune adds 0.1: the rows here measure the
    methods, auto its choices)."""
    from vit_transfer.adapters.lora import LoraSettings
    from vit_transfer.config import ModelConfig
    from vit_transfer.autoselect.augment import augment_config
    from vit_transfer.data import DataConfig
    from vit_transfer.training.config import OptimConfig, OutputConfig, ScheduleConfig, TrainConfig
    from vit_transfer.training.recipe import TrainRecipe

    m = METHODS[method]
    steps = max(1, math.ceil(epochs * (count_images(folder / "train") // batch)))
    return TrainRecipe(
        model=ModelConfig(source=MODEL, image_size=IMAGE_SIZE, head_init=m.head_init),
        data=DataConfig(source=str(folder), num_workers=0),
        augment=augment_config(m.augment),
        method=m.method,
        lora=LoraSettings(**m.lora) if m.lora else LoraSettings(),
        optim=OptimConfig(name=m.optimizer, lr=lr),
        schedule=ScheduleConfig(name="cosine", warmup_steps=min(steps // 10, 100)),
        train=TrainConfig(epochs=epochs, max_steps=None, batch_size=batch, precision="auto", seed=seed,
                          log_every=10**6),
        output=OutputConfig(dir=str(out), log_with="none", overwrite=True),
    )


class Runner:
    """Runs units: fine-tunes through ``train``, probes on features extracted once per folder, ``auto``."""

    def __init__(self, args: argparse.Namespace, work: Path):
        self.args, self.work = args, work
        self.features: dict = {}

    def folder(self, setting: str, seed: int) -> Path:
        return write_splits(self.work / "data" / f"{setting}-seed{seed}", SETTINGS[setting], seed, self.args.smoke)

    def __call__(self, unit: Unit) -> dict:
        folder = self.folder(unit.setting, unit.seed)
        out = self.work / "runs" / "current"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        fields = {"run": self.fine_tune, "probe": self.probe, "auto": self.auto}[unit.kind](unit, folder, out)
        seconds = time.perf_counter() - started
        shutil.rmtree(out, ignore_errors=True)
        row = {"kind": unit.kind, "setting": unit.setting, "seed": unit.seed, "method": unit.method, "lr": unit.lr,
               **fields, "seconds": round(seconds, 1), "train_images": count_images(folder / "train"),
               "machine": machine(), "precision": precision(), "commit": commit(),
               "protocol": protocol(self.args, unit.setting, unit.kind, unit.method)}
        print(f"  {unit}: val {100 * row['val_top1']:.1f} test {100 * row['test_top1']:.1f} ({seconds:.0f} s)",
              flush=True)
        return row

    def fine_tune(self, unit: Unit, folder: Path, out: Path) -> dict:
        from vit_transfer.training import train

        recipe = fine_tune_recipe(unit.method, unit.lr, folder, out, unit.seed, epochs_of(self.args, unit.setting),
                                  batch_size(self.args))
        m = train(recipe, command="benchmarks/bench_transfer.py").metrics
        return {"val_top1": m["eval_top1"], "test_top1": m["test_top1"], "best_step": m.get("best_step"),
                "steps": m["steps"], "probe_val_top1": m.get("probe_val_top1"), "returned": m.get("returned"),
                "finetuned_val_top1": m.get("finetuned_eval_top1"),
                "trainable_parameters": m.get("trainable_parameters"), "train_seconds": m.get("train_seconds")}

    def probe(self, unit: Unit, folder: Path, out: Path) -> dict:
        """The class-token probe (cls, last block) or the whole sweep, C on validation, fitted on train only; the
        test split scored as auto scores a returned probe: the probe as the model's head, through ``evaluate``."""
        import copy

        from vit_transfer.autoselect.probe_sweep import attach_probe, sweep_probes
        from vit_transfer.inference import evaluate
        from vit_transfer.probe.config import ProbeConfig
        from vit_transfer.probe.logistic import topk_accuracy

        (train, val, test), model, data = self.block_features(folder, unit.seed)
        options = {"poolings": ("cls",), "blocks": [1]} if unit.method == PROBES[0] else {}
        sweep = sweep_probes(train, val, data.num_labels, config=ProbeConfig(fewshot=False, cache=False), **options)
        best = sweep.best
        served = copy.deepcopy(model)
        attach_probe(served, sweep, data.id2label)
        test_top1 = evaluate(served, data.test, data.id2label, batch_size=BATCH_SIZE, progress=False).numbers["top1"]
        features_top1 = topk_accuracy(sweep.probe.logits(test.select(best.pooling, best.last_n)), test.labels)
        return {"val_top1": sweep.val_top1, "test_top1": test_top1, "features_test_top1": features_top1,
                "pooling": best.pooling, "last_n": best.last_n, "C": best.C}

    def block_features(self, folder: Path, seed: int):
        """(train, validation and test features of the last blocks, both poolings; the model; the datasets), once
        per folder, as auto extracts them (kept for every folder: the plan runs a setting's probes seed after seed,
        twice; a few tens of MB each)."""
        if folder not in self.features:
            from vit_transfer.autoselect.probe_sweep import block_choices, extract_block_features, model_depth
            from vit_transfer.config import ModelConfig
            from vit_transfer.data import DataConfig, load_image_datasets
            from vit_transfer.models import load_vit_from_config
            data = load_image_datasets(DataConfig(source=str(folder), num_workers=0))
            model = load_vit_from_config(ModelConfig(source=MODEL, image_size=IMAGE_SIZE), data.num_labels,
                                         data.id2label, seed)
            options = dict(batch_size=BATCH_SIZE, precision=precision(), num_workers=0, progress=False)
            blocks = max(block_choices(model_depth(model)))
            features = tuple(extract_block_features(model, split, blocks, **options)
                             for split in (data.train, data.eval, data.test))
            self.features[folder] = (features, model, data)
        return self.features[folder]

    def auto(self, unit: Unit, folder: Path, out: Path) -> dict:
        from vit_transfer import auto
        from vit_transfer.autoselect import AutoSettings

        started = time.perf_counter()
        result = auto(str(folder), MODEL, budget_seconds=unit.lr, image_size=IMAGE_SIZE, output_dir=out,
                      settings=AutoSettings(seed=unit.seed, progress=False, overwrite=True))
        elapsed = time.perf_counter() - started
        return {"val_top1": result.val_top1, "test_top1": result.metrics["test_top1"], "chosen": result.chosen,
                "elapsed_seconds": round(elapsed, 1), "budget_seconds": unit.lr,
                "winner_vs_probe": result.metrics["auto"].get("winner_vs_probe"),
                "augment": result.augment.to_dict() if result.augment else None}


def commit() -> str:
    return resumable.commit(["vit_transfer", "benchmarks/bench_transfer.py", "benchmarks/resumable.py"])


def check_row(row: dict) -> "str | None":
    if row["kind"] not in ("run", "probe", "auto"):
        return f"unknown kind {row['kind']!r} (run, probe or auto)"
    if row["setting"] not in SETTINGS:
        return f"unknown setting {row['setting']!r} (known: {', '.join(SETTINGS)})"
    return check_fraction(row, "test_top1") or check_fraction(row, "val_top1")


def read_rows(path: Path) -> list[dict]:
    """Every row of the results file; a malformed line is an error naming the file and line."""
    return resumable.read_rows(path, ROW_KEYS, check_row)


# --- the page ------------------------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pct(x: "float | None") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def summarise(rows: list[dict], args: argparse.Namespace) -> dict:
    """Per setting: each table row's choice and scores (``None`` scores where runs are missing), runs done / planned."""
    _, grids = plan(args, rows)
    out = {}
    for setting in args.settings:
        entries, done, planned = [], 0, 0
        for method in args.methods:
            grid = grids[(setting, method)]
            mine = matching(rows, args, setting, "run", method)
            mine = [r for r in mine if r["lr"] in grid]
            done, planned = done + len(mine), planned + len(grid) * len(args.seeds)
            means = mean_val_by_rate(mine, args.seeds)
            complete = len(means) == len(grid)
            entry = {"name": method, "kind": "run", "grid": {lr: means.get(lr) for lr in grid}, "complete": complete}
            if complete:
                lr = pick_rate(means)
                chosen = [r for r in mine if r["lr"] == lr]
                entry.update(rate=lr, edge=edge_side(grid, means) != 0, val=means[lr],
                             test=_mean_std([r["test_top1"] for r in chosen]),
                             seconds=statistics.mean(r["seconds"] for r in chosen),
                             probe_val=_maybe_mean([r.get("probe_val_top1") for r in chosen]),
                             starts=sum(r.get("returned") == "start" for r in chosen), runs=len(chosen))
            entries.append(entry)
        for name in PROBES:
            mine = matching(rows, args, setting, "probe", name)
            done, planned = done + len(mine), planned + len(args.seeds)
            entry = {"name": name, "kind": "probe", "complete": len(mine) == len(args.seeds)}
            if entry["complete"]:
                entry.update(val=statistics.mean(r["val_top1"] for r in mine),
                             test=_mean_std([r["test_top1"] for r in mine]),
                             seconds=statistics.mean(r["seconds"] for r in mine),
                             configs=[f"{r['pooling']} x{r['last_n']}, C {r['C']:.3g}"
                                      for r in sorted(mine, key=lambda r: r["seed"])])
            entries.append(entry)
        for budget in budgets_of(args):
            mine = [r for r in matching(rows, args, setting, "auto") if r["lr"] == budget]
            done, planned = done + len(mine), planned + len(args.seeds)
            entry = {"name": f"auto ({budget:g} s)", "kind": "auto", "budget": budget,
                     "complete": len(mine) == len(args.seeds)}
            if entry["complete"]:
                entry.update(val=statistics.mean(r["val_top1"] for r in mine),
                             test=_mean_std([r["test_top1"] for r in mine]),
                             seconds=statistics.mean(r["seconds"] for r in mine),
                             over_budget=max(r["elapsed_seconds"] / r["budget_seconds"] for r in mine),
                             chosen=[r["chosen"] for r in sorted(mine, key=lambda r: r["seed"])])
            entries.append(entry)
        out[setting] = {"entries": entries, "done": done, "planned": planned}
    return out


def _maybe_mean(values: list) -> "float | None":
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _rate_cell(entry: dict) -> str:
    if entry["kind"] == "run":
        grid = ", ".join(f"{lr:g}: {_pct(v)}" for lr, v in entry["grid"].items())
        if not entry["complete"]:
            return f"- ({grid})"
        return f"{entry['rate']:g}{' (edge)' if entry['edge'] else ''} ({grid})"
    if entry["kind"] == "probe":
        return "; ".join(entry["configs"]) if entry["complete"] else "-"
    return ", ".join(entry["chosen"]) if entry["complete"] else "-"


def table(summary: dict, setting: str) -> list[str]:
    """The setting's table: method | chosen rate (grid: mean val per rate) | mean val top-1 | test | seconds."""
    s = summary[setting]
    lines = [f"## {SETTINGS[setting].title}", ""]
    if s["done"] < s["planned"]:
        lines += [f"{s['done']} of {s['planned']} runs done.", ""]
    lines += ["| method | chosen rate (grid: mean val top-1 per rate) | mean val top-1 | test top-1 (mean +- std) "
              "| seconds per run |", "|---|---|---:|---:|---:|"]
    for e in s["entries"]:
        if not e["complete"]:
            lines.append(f"| {e['name']} | {_rate_cell(e)} | - | - | - |")
            continue
        mean, std = e["test"]
        lines.append(f"| {e['name']} | {_rate_cell(e)} | {_pct(e['val'])} | {100 * mean:.1f} +- {100 * std:.1f} "
                     f"| {e['seconds']:.0f} |")
    return lines + [""]


def targets(summary: dict) -> list[str]:
    """The issue's four targets, each checked with its numbers (or what is still missing)."""
    lines = ["## Targets", "", "Checked on test top-1 (mean over seeds). 'Best single method': the one non-auto row (a "
             "fine-tune at its chosen rate, or a probe) with the best test top-1 averaged over the settings; auto's "
             "budget: its longest run's wall seconds over the budget.", ""]

    def entry(setting, name):
        return next((e for e in summary[setting]["entries"] if e["name"] == name), None)

    def test(e):
        return e["test"][0] if e and e["complete"] else None

    for setting in summary:
        lp, cls_probe = entry(setting, "LP-FT"), entry(setting, PROBES[0])
        if test(lp) is None or test(cls_probe) is None:
            lines.append(f"- LP-FT >= class-token probe on {setting}: waiting for runs.")
        else:
            ok = test(lp) >= test(cls_probe)
            start = "" if lp.get("probe_val") is None else f"; LP-FT's own probe start: val {_pct(lp['probe_val'])}"
            if lp.get("starts"):
                start += f"; the start returned (fine-tune within noise) in {lp['starts']} of {lp['runs']} runs"
            lines.append(f"- LP-FT >= class-token probe on {setting}: {'yes' if ok else 'NO'} (test {_pct(test(lp))} "
                         f"vs {_pct(test(cls_probe))}; val {_pct(lp['val'])} vs {_pct(cls_probe['val'])}{start}).")
    autos = [e["name"] for e in next(iter(summary.values()))["entries"] if e["kind"] == "auto"] if summary else []
    for name in autos:
        for setting in summary:
            a, best = entry(setting, name), entry(setting, PROBES[1])
            if test(a) is None or test(best) is None:
                lines.append(f"- {name} >= best probe sweep on {setting}: waiting for runs.")
            else:
                lines.append(f"- {name} >= best probe sweep on {setting}: {'yes' if test(a) >= test(best) else 'NO'} "
                             f"(test {_pct(test(a))} vs {_pct(test(best))}).")
        others = [e["name"] for e in next(iter(summary.values()))["entries"] if e["kind"] != "auto"]
        complete = all(test(entry(s, n)) is not None for s in summary for n in others + [name])
        if not complete:
            lines.append(f"- {name} >= best single method - 0.5 on the mean over settings: waiting for runs.")
        else:
            means = {n: statistics.mean(test(entry(s, n)) for s in summary) for n in others}
            best = max(means, key=means.get)
            mine = statistics.mean(test(entry(s, name)) for s in summary)
            ok = mine >= means[best] - 0.005
            lines.append(f"- {name} >= best single method - 0.5 on the mean over settings: {'yes' if ok else 'NO'} "
                         f"({_pct(mine)} vs {best} {_pct(means[best])}).")
        for setting in summary:
            a = entry(setting, name)
            if a and a["complete"]:
                ok = a["over_budget"] <= 1.1
                lines.append(f"- {name} within its budget on {setting}: {'yes' if ok else 'NO'} (longest run "
                             f"{a['over_budget']:.2f} x the budget; the issue allows 1.10).")
    return lines + [""]


def measured_on(rows: list[dict]) -> str:
    """Which machines measured which rows (the fine-tunes, LP-FT, the probes and auto may come from different ones)."""
    groups: dict[str, set] = {}
    for r in rows:
        group = {"run": "LP-FT" if r["method"] == "LP-FT" else "other fine-tunes", "probe": "probes",
                 "auto": "auto"}[r["kind"]]
        groups.setdefault(group, set()).add(r["machine"] + (f", {r['precision']}" if r.get("precision") else ""))
    return "; ".join(f"{g}: {' and '.join(sorted(m))}" for g, m in sorted(groups.items())) or "-"


def markdown(summary: dict, args: argparse.Namespace, rows: list[dict], left_out: int) -> str:
    epochs = ", ".join(f"{s} {epochs_of(args, s):g}" for s in args.settings)
    machines = measured_on(rows)
    lines = ["# Transfer methods, probes and auto on the same images (shipped Fashion-MNIST ViT, 32 px)", "",
             "`python benchmarks/bench_transfer.py" + (" --smoke`" if args.smoke else
                                                       " --max-minutes 60` (repeated until every run is in)")
             + ". Rows: `transfer.jsonl`"
             + (f" ({left_out} row(s) of another protocol left out)" if left_out else "") + ".", ""]
    if args.smoke:
        lines += ["**Smoke run: a few images per class, 1 epoch, tiny budgets. The numbers mean nothing.**", ""]
    lines += [f"Seeds {', '.join(map(str, args.seeds))}: per seed one validation split (20% of the training "
              "images, stratified) and, at 10 per class, one training draw; the test split is fixed. Every method and "
              "both probes see the same training images. Fine-tunes: `vit_transfer.train`, keep-best, batch "
              f"{batch_size(args)}, epochs per setting: {epochs}; the rate is chosen on the mean validation top-1 over "
              "seeds, and a grid whose pick sat on an edge grew by one half-decade rung on that side "
              f"(at most {MAX_EXTENSIONS}; not when every rate scored the same; '(edge)': the pick still sits on the "
              "edge). Test top-1: the chosen rate's "
              "runs, mean +- std over seeds, each scored once. Probes: C on validation, fitted on train only "
              "(the class-token probe is LP-FT's start; the sweep is auto's: pooling x last 1, 2, 4 or all 6 "
              "blocks), scored on test as the model auto returns (the probe as its head). auto: its chosen "
              "candidate per seed "
              f"and wall seconds. Measured on: {machines}.", ""]
    for setting in args.settings:
        lines += table(summary, setting)
    lines += targets(summary)
    return "\n".join(lines)


def rebuild(args: argparse.Namespace, out: Path) -> dict:
    """``transfer.md`` and ``transfer.json`` from every row of the current protocol."""
    all_rows = read_rows(out / f"{NAME}.jsonl")
    rows = [r for r in all_rows if r["setting"] in SETTINGS
            and r["protocol"] == protocol(args, r["setting"], r["kind"], r["method"])]
    summary = summarise(rows, args)
    page = markdown(summary, args, rows, len(all_rows) - len(rows))
    (out / f"{NAME}.md").write_text(page + "\n")
    (out / f"{NAME}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1, default=str) + "\n")
    return {"summary": summary, "page": page}


# --- the command line ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                   help=f"fine-tune rows ({', '.join(METHODS)}); the probes and auto always run")
    p.add_argument("--epochs", type=float, default=None,
                   help="epochs per fine-tune, every setting (default per setting: "
                        + ", ".join(f"{k} {s.epochs:g}" for k, s in SETTINGS.items()) + ")")
    p.add_argument("--budgets", type=float, nargs="+", default=None,
                   help=f"auto's budgets in seconds (default {' '.join(f'{b:g}' for b in AUTO_BUDGETS)})")
    p.add_argument("--no-auto", action="store_true",
                   help="run no auto unit this call (they are wall-clock budgeted: run them alone on the machine)")
    p.add_argument("--no-extend", action="store_true", help="never grow a grid beyond its starting rates")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no new run after this many minutes (the one in progress finishes)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: two threads on the busy 2-core machine spun: a probe sweep took 100x longer)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny: 1 seed, 2 rates, 1 epoch, a few images a class, into a temporary folder")
    p.add_argument("--output", type=Path, default=None, help="where transfer.{jsonl,md,json} go (default "
                                                             "benchmarks/results; --smoke: a temporary folder)")
    return p


def main(argv: "list[str] | None" = None, runner: "Callable[[Unit], dict] | None" = None,
         clock: Callable[[], float] = time.monotonic) -> int:
    args = build_parser().parse_args(argv)
    if "lfw" in args.settings and runner is None:
        try:
            import skimage  # noqa: F401
        except ImportError:
            print(INSTALL_SKIMAGE, file=sys.stderr)
            return 2
    scratch = Path(tempfile.mkdtemp(prefix="bench_transfer_")) if args.smoke else None
    if args.smoke:
        args.seeds = args.seeds[:1]
        args.epochs = SMOKE["epochs"] if args.epochs is None else args.epochs
    out = args.output or (scratch if args.smoke else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / f"{NAME}.jsonl"
    work = None
    if runner is None:
        import torch

        torch.set_num_threads(args.threads)
        work = Path(tempfile.mkdtemp(prefix="bench_transfer_work_"))  # image folders and the run in progress
        runner = Runner(args, work)
    started = clock()
    todo, _ = plan(args, read_rows(rows_path))
    print(f"rows in {rows_path}; {len(todo)} unit(s) to do (more if a grid grows)", flush=True)

    def next_unit() -> "Unit | None":
        pending, _ = plan(args, read_rows(rows_path))
        return pending[0] if pending else None

    try:
        run_chunk(next_unit, runner, rows_path, max_minutes=args.max_minutes, clock=clock, name=str)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    result = rebuild(args, out)
    print(result["page"])
    print(f"wrote {out / (NAME + '.md')} ({clock() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
