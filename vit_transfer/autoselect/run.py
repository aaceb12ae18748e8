"""``auto(data, ...)``: the best transfer for a folder of images inside a wall-clock budget, chosen on validation.

1. probe sweep on features extracted once (``probe_sweep``): pooling x last-N blocks x C;
2. fine-tune candidates by images per class (``candidates``), all with the train augmentation that won a duel on
   validation (``augment``), pruned by successive halving (``halving``) with short ``train(recipe)`` runs scored on
   the validation split;
3. the winner retrained for as long as the budget allows;
4. the returned model is the winner only when it beats the best probe on validation by more than one standard error
   of the paired difference (``vit_transfer.selection.compare_paired``: a small validation split's one-image wins
   are noise), else the probe; so never below the probe on validation;
5. the test split, when there is one, is scored once, on the returned model only.

Everything is written under a temporary sibling of ``output_dir`` and moved into place at the end, so an
error (an empty class, one class, a budget too small for even the probe) leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..config import ModelConfig
from ..data import DataConfig, load_image_datasets
from ..errors import ConfigError, DataError, VitTransferError
from ..precision import resolve_precision
from ..probe.config import ProbeConfig, ProbeRecipe
from ..runs.files import TMP_PREFIX, command_line, library_versions, write_json
from ..selection import PairedComparison, compare_paired
from .augment import DEFAULT_AUGMENTS, AugmentDuel, check_augments, choose_augment
from .budget import Budget
from .candidates import MENU, RunSettings, candidate_recipe, candidates_for
from .halving import Candidate, HalvingResult, Trial, successive_halving
from .leaderboard import Row, write_leaderboard
from .probe_sweep import (BLOCK_CHOICES, POOLING_CHOICES, ProbeSweep, attach_probe, block_choices,
                          extract_block_features, model_depth, probe_correct, stock_loader_note, sweep_probes)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = ModelConfig().source
AUTO_FILE = "auto.json"


SWEEP_SHARE = 0.4  # of the time left after feature extraction, for the probe sweep's fits (all of it when the
# halving's share of the rest could not pay for even one first-rung run: then nothing else would use it)
FINAL_SAFETY = 0.9  # share of the time left that the winner's run is planned on
OVERRUN = 1.05  # a run still going at this multiple of the budget is stopped (the probe is returned)
END_RESERVE_SHARE = 0.02  # of the budget, kept for writing the run folder (besides the passes the reserve prices)


class BudgetError(ConfigError):
    """The budget cannot pay for the step named in the message."""


class _OutOfTime(Exception):
    """Raised by the deadline hook inside a training run that would overrun the budget."""


@dataclass
class AutoSettings:
    """The search's knobs; the defaults suit a real folder, tests shrink them."""

    batch_size: int = 32
    rates_per_method: int = 3
    methods: "tuple[str, ...] | None" = None  # None: by images per class (candidates.FEW / MORE)
    # the train augmentations the duel chooses among (augment.AUGMENTS); one name: no duel, every run uses it
    augments: tuple[str, ...] = DEFAULT_AUGMENTS
    # length of the first halving rung: at 1 (5 steps on lfw's 120 images) every rate of a method scored the same
    rung_epochs: float = 2.0
    min_steps: int = 5
    max_epochs: float = 30.0  # the winner's run never goes beyond this
    eta: int = 2
    halving_share: float = 0.5  # of the time left after the probe sweep; the rest pays the winner's run
    evaluations: int = 5  # validation passes during the winner's run (keep-best picks among them)
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(fewshot=False, cache=False))
    poolings: tuple[str, ...] = POOLING_CHOICES  # the probe sweep's poolings
    blocks: tuple[int, ...] = BLOCK_CHOICES  # and its last-N blocks (capped by the model's depth)
    val_fraction: float = 0.1  # carved from train when the folder has no validation split
    seed: int = 0
    num_workers: int = 0
    precision: str = "auto"  # auto: bf16 where the hardware has it (vit_transfer.precision), else fp32
    cpu: bool = False
    overwrite: bool = False  # replace a non-empty output_dir
    progress: bool = True

    def __post_init__(self) -> None:
        try:
            self.augments = check_augments(self.augments)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc


@dataclass
class AutoResult:
    """The run folder, the returned model, what was chosen and why (every trial)."""

    output_dir: Path
    model: object
    chosen: str  # "probe" or the winning candidate's label
    val_top1: float
    metrics: dict
    sweep: ProbeSweep
    halving: "HalvingResult | None"
    rows: list[Row]
    augment: "AugmentDuel | None" = None  # the train augmentation the fine-tunes used, and the duel that chose it


def auto(
    data: str,
    model: str = DEFAULT_MODEL,
    *,
    budget_seconds: float = 1200.0,
    image_size: "int | None" = None,
    output_dir: "str | Path" = "runs/auto",
    settings: "AutoSettings | None" = None,
) -> AutoResult:
    """Choose and train the best transfer of ``model`` to the images in ``data`` within ``budget_seconds``."""
    settings = settings or AutoSettings()
    budget = Budget(budget_seconds, progress=settings.progress)
    out = Path(output_dir)
    staging = out.with_name(f"{TMP_PREFIX}auto-{out.name}")
    try:
        check_output_dir(out, settings.overwrite)
        check_class_folders(data)
        budget.stage("reading the data")
        datasets = load_image_datasets(DataConfig(source=str(data), val_fraction=settings.val_fraction,
                                                  split_seed=settings.seed, num_workers=settings.num_workers))
        check_datasets(datasets, data)
        search = _Search(str(data), model, image_size, datasets, settings, budget, staging)
        result = search.run()
        publish(staging / result.output_dir.name, out)
        result.output_dir = out
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        budget.close()


# --- checks: each a clear message before anything is written ------------------------------------------------
def check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; choose another output folder or pass overwrite")


def check_class_folders(data: str) -> None:
    """An image folder's class sub-folder without an image is an error (the folder reader skips it silently)."""
    from ..data.images import image_files

    root = Path(str(data)).expanduser()
    if not root.is_dir():
        return
    splits = [root / s for s in sorted(os.listdir(root)) if (root / s).is_dir() and not s.startswith(".")]
    if not (root / "train").is_dir():
        splits = [root]
    for split in splits:
        for entry in sorted(os.listdir(split)):
            folder = split / entry
            if folder.is_dir() and not entry.startswith(".") and not image_files(folder):
                raise DataError(f"class folder {folder} holds no image: add images of class {entry!r} or remove "
                                "the folder")


def check_datasets(datasets, source: str) -> None:
    if datasets.num_labels < 2:
        names = ", ".join(datasets.id2label.values())
        raise DataError(f"{source} has {datasets.num_labels} class ({names}); a classifier needs at least two class "
                        "folders")
    if datasets.eval is None or len(datasets.eval) == 0:
        raise DataError(f"{source} has no validation split and none could be carved from train; add a validation/ "
                        "folder or more training images")


def publish(folder: Path, out: Path) -> None:
    """Move the finished run folder to ``out`` (replacing an earlier one only when overwrite allowed it)."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, out)


# --- the search -----------------------------------------------------------------------------------------------
class _Search:
    def __init__(self, data: str, model: str, image_size, datasets, settings: AutoSettings, budget: Budget,
                 staging: Path):
        self.data, self.model_source, self.image_size = data, model, image_size
        self.datasets, self.settings, self.budget, self.staging = datasets, settings, budget, staging
        self.rows: list[Row] = []
        self.trial_metrics: dict[tuple[Candidate, int], dict] = {}
        self.duel = AugmentDuel(settings.augments[0], [])
        self.precision = resolve_precision(settings.precision, settings.cpu)  # the one rule (vit_transfer.precision)
        self.halving_plan: dict = {}  # set by _halving, which every run reaches before the note is written
        self.budget_cut: "str | None" = None  # where the budget stopped a fine-tune or the winner's retraining

    # -- 1. probe sweep
    def run(self) -> AutoResult:
        from ..models import load_vit_from_config

        s, budget, data = self.settings, self.budget, self.datasets
        budget.stage("loading the model")
        torch.manual_seed(s.seed)
        model = load_vit_from_config(ModelConfig(source=self.model_source, image_size=self.image_size),
                                     data.num_labels, data.id2label, s.seed)
        block_grid = block_choices(model_depth(model), s.blocks)
        blocks = max(block_grid)
        self.batch = min(s.batch_size, len(data.train))
        self.seconds_per_batch = self._time_one_batch(model, blocks)
        batches = {name: math.ceil(len(split) / self.batch) if split is not None else 0
                   for name, split in (("train", data.train), ("eval", data.eval), ("test", data.test))}
        # the end of the run: the winner's validation pass (the paired comparison), scoring the test split once
        # (evaluate measured ~2.5x a feature pass) and writing
        self.end_passes = 3 * self.seconds_per_batch * (batches["test"] + batches["eval"])
        self.end_reserve = self.end_passes + END_RESERVE_SHARE * budget.seconds
        needed = self.seconds_per_batch * (batches["train"] + batches["eval"]) + self.end_reserve
        if needed > budget.remaining():
            raise BudgetError(
                f"a budget of {budget.seconds:.0f} s is too small for even the probe: extracting the features of "
                f"{len(data.train) + len(data.eval)} images (and scoring the test split once) needs about "
                f"{needed + budget.elapsed():.0f} s from the start here; give a larger budget")
        self.staging.mkdir(parents=True, exist_ok=True)
        options = dict(batch_size=self.batch, precision="fp32" if self.precision == "no" else self.precision,
                       num_workers=s.num_workers, progress=s.progress)
        budget.stage("probe sweep: features")
        train = extract_block_features(model, data.train, blocks, desc="train features", **options)
        val = extract_block_features(model, data.eval, blocks, desc="validation features", **options)
        budget.stage("probe sweep: fits")
        # the sweep's fits may use SWEEP_SHARE of the time left (at least one configuration always runs), or all
        # of it when no fine-tune could run after them
        left = max(0.0, budget.remaining() - self.end_reserve)
        self.sweep_share = SWEEP_SHARE if self._first_run_affordable((1 - SWEEP_SHARE) * left) else 1.0
        sweep_end = budget.elapsed() + self.sweep_share * left
        sweep = sweep_probes(train, val, data.num_labels, config=s.probe, poolings=s.poolings, blocks=block_grid,
                             stop=lambda: budget.elapsed() > sweep_end)
        for t in sweep.trials:
            self.rows.append(Row(f"probe ({t.pooling}, last {t.last_n} block{'s' if t.last_n > 1 else ''})", t.C,
                                 "C", None, None, t.val_top1, t.seconds, "probe sweep"))
        probe_row = self.rows[sweep.trials.index(sweep.best)]
        self.sweep_best = sweep.best  # LP-FT candidates start from it (candidates.RunSettings)
        probe_row.val_top1 = sweep.val_top1  # the refitted probe's: the returned model's when the probe wins

        # -- 2. successive halving
        halving, final = self._halving(), None
        if halving.winner is not None:
            final = self._final(halving)
        # -- 3. the returned model: the winner only when it clearly beats the probe on the same validation images
        from ..inference import load_trained_model

        paired, finetuned, winner = None, None, None
        if final is not None:  # the winner's run may return its start (train.keep_start_within_noise: LP-FT)
            winner = halving.winner.label + (", its start" if final[1].metrics.get("returned") == "start" else "")
        if final is not None and final[1].metrics["eval_top1"] > sweep.val_top1:
            finetuned = load_trained_model(final[0])
            paired = self._compare_with_probe(finetuned, sweep, val)
        if paired is not None and paired.clearly_better:
            folder, train_result, recipe = final
            chosen, val_top1 = winner, float(train_result.metrics["eval_top1"])
            metrics = dict(train_result.metrics)
            self._write_train_recipe(recipe, folder)
            returned_model = finetuned
            self.rows[-1].returned = True
        else:
            folder = self.staging / "probe"
            chosen, val_top1 = "probe", sweep.val_top1
            returned_model = model
            metrics = self._write_probe(model, sweep, folder)
            probe_row.returned = True
        for other in ("final", "probe", "trials"):
            if (self.staging / other) != folder:
                shutil.rmtree(self.staging / other, ignore_errors=True)
        metrics.update(self._score_test(returned_model, folder))
        note = stock_loader_note(returned_model)  # a probe's, or an LP-FT winner's head on the sweep's best blocks
        versus = paired.to_dict() if paired is not None else None
        short = self._short_budget_note(halving, retrained=final is not None)
        metrics["auto"] = {"chosen": chosen, "val_top1": val_top1, "probe_val_top1": sweep.val_top1,
                           "short_budget": short,
                           "probe": sweep.best.summary(), "winner_vs_probe": versus,
                           "augment": self.duel.chosen, "sweep_share": self.sweep_share,
                           "budget_seconds": budget.seconds,
                           "elapsed_seconds": budget.elapsed(), "stock_loaders": note}
        write_json(folder / "metrics.json", metrics)
        write_json(folder / AUTO_FILE, {"chosen": chosen, "val_top1": val_top1, "probe_sweep": sweep.to_dict(),
                                        "halving": self._halving_dict(halving), "winner_vs_probe": versus,
                                        "stock_loaders": note})
        summary = (f"Returned: **{chosen}**, validation top-1 {val_top1:.4f} (best probe {sweep.val_top1:.4f}); "
                   f"{len(data.train)} training images, {data.num_labels} classes.")
        if paired is not None:
            summary += " " + describe_comparison(winner, paired)
        if short:
            summary += " " + short
        if note:
            summary += " " + note
        write_leaderboard(self.rows, folder, budget_seconds=budget.seconds, elapsed=budget.elapsed(), summary=summary)
        return AutoResult(folder, returned_model, chosen, val_top1, metrics, sweep, halving, self.rows, self.duel)

    def _short_budget_note(self, halving: HalvingResult, retrained: bool) -> "str | None":
        """Why no fine-tune challenged the probe, when the budget is the reason (None otherwise). When no first-rung
        run fitted: the budget B at which the halving's share pays for every first-rung run (the duel's extra runs
        included) at the prior's price, solving ``B = started + reserve(B) + runs * price / share``, the reserve
        growing by 2% of B."""
        if retrained:
            return None
        plan, s = self.halving_plan, self.settings
        if halving.trials:
            return self.budget_cut
        runs = plan["candidates"] + max(0, len(s.augments) - 1)
        needed = (plan["started"] + self.end_passes + runs * plan["first_run_seconds"] / s.halving_share) / (
            1 - END_RESERVE_SHARE)
        return (f"No fine-tune was tried: one first-rung run ({plan['first_rung_steps']} steps, {s.rung_epochs:g} "
                f"epochs) was priced at about {plan['first_run_seconds']:.0f} s (a cautious prior: measured runs "
                f"re-price the next), more than the halving's {max(0.0, plan['seconds']):.0f} s (its share of the time "
                f"after the probe sweep; the rest is kept for the winner's run and the test split). A budget of about "
                f"{math.ceil(needed / 60)} min lets the first rung try all {plan['candidates']} candidates"
                + (" (and the augmentation duel)." if runs > plan["candidates"] else "."))

    def _compare_with_probe(self, finetuned, sweep: ProbeSweep, val) -> PairedComparison:
        """The winner's and the probe's per-image correctness on the validation split, compared pairwise."""
        from ..inference import evaluate

        self.budget.stage("winner vs probe on validation")
        result = evaluate(finetuned, self.datasets.eval, self.datasets.id2label, batch_size=self.batch,
                          num_workers=self.settings.num_workers, precision=self.precision,
                          progress=self.settings.progress, desc="validation (winner vs probe)")
        return compare_paired(result.correct(), probe_correct(sweep, val))

    def _time_one_batch(self, model, blocks: int) -> float:
        """Seconds of one feature-extraction batch (the unit every estimate here is made of)."""
        from torch.utils.data import Subset

        options = dict(batch_size=self.batch, progress=False, precision="fp32" if self.precision == "no" else self.precision)
        extract_block_features(model, Subset(self.datasets.train, range(1)), blocks, **options)  # first-call costs
        started = time.perf_counter()
        extract_block_features(model, Subset(self.datasets.train, range(self.batch)), blocks, **options)
        return time.perf_counter() - started

    # -- 2. successive halving on validation
    def _halving(self) -> HalvingResult:
        from ..training import train

        s, data, budget = self.settings, self.datasets, self.budget
        per_class = len(data.train) / data.num_labels
        candidates = candidates_for(per_class, s.rates_per_method, s.methods, augment=s.augments[0])
        first = self._first_rung_steps()
        self.max_steps = max(first, math.ceil(s.max_epochs * self.steps_per_epoch))
        reserve = max(0.0, budget.remaining() - self.end_reserve) * (1 - s.halving_share) + self.end_reserve
        run = self._run_settings()
        self.halving_plan = {"started": budget.elapsed(), "seconds": budget.remaining() - reserve,
                             "candidates": len(candidates), "first_rung_steps": first,
                             "first_run_seconds": self._run_prior(first)}

        class _Share:
            @staticmethod
            def remaining() -> float:
                return budget.remaining() - reserve

        counter = iter(range(10**6))

        def run_trial(candidate: Candidate, steps: int, stage: str) -> tuple[float, "float | None"]:
            budget.stage(f"{stage}: {candidate.label}, {steps} steps")
            folder = self.staging / "trials" / f"{next(counter):03d}"
            started = time.perf_counter()
            try:
                result = train(candidate_recipe(run, candidate, steps, str(folder)), command="vit-transfer auto",
                               hooks=[self._deadline_hook()])
                val_top1, val_loss, error = float(result.metrics["eval_top1"]), result.metrics["eval_loss"], None
                self.trial_metrics[(candidate, steps)] = {**result.metrics, "wall_seconds": time.perf_counter() - started}
            except _OutOfTime:  # ranked last; the budget check stops the search before the next run
                val_top1, val_loss, error = -1.0, None, "out of time"
                self.budget_cut = (f"The budget stopped the halving's run of {candidate.label} ({steps} steps) "
                                   "before it finished; the probe was returned.")
            except (VitTransferError, RuntimeError, ValueError) as exc:  # a method this model cannot take
                logger.warning("auto: %s failed (%s); ranked last", candidate.label, exc)
                val_top1, val_loss, error = -1.0, None, str(exc)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self.rows.append(Row(candidate.method, candidate.lr, "lr", steps, steps / self.steps_per_epoch,
                                 val_top1, time.perf_counter() - started, stage
                                 + (f" (failed: {error})" if error else ""), augment=candidate.augment))
            return val_top1, val_loss

        def score(candidate: Candidate, steps: int) -> tuple[float, "float | None"]:
            return run_trial(candidate, steps, f"halving rung {self._rung(steps, first)}")

        def prior(candidate: Candidate, steps: int) -> float:
            return self._run_prior(steps)

        prescored = self._augmentation_duel(candidates[0], first, run_trial, prior, _Share())
        candidates = [replace(c, augment=self.duel.chosen) for c in candidates]
        return successive_halving(candidates, score, min_resource=first, max_resource=self.max_steps, eta=s.eta,
                                  budget=_Share(), estimate=prior, prescored=prescored)

    def _augmentation_duel(self, lead: Candidate, steps: int, run_trial, prior, share) -> list[Trial]:
        """The first candidate (the first menu method at its middle rate) trained for ``steps`` once per
        augmentation; every candidate then uses the best on validation (``augment.choose_augment``). Returns the
        winning run as the halving's first-rung run of that candidate. No duel when one augmentation is offered or
        the halving's share of the budget cannot pay for it (the first listed is used)."""
        names = self.settings.augments
        if len(names) < 2:
            return []
        if len(names) * prior(lead, steps) > share.remaining():
            logger.warning("auto: no time for the augmentation duel; every run trains with %s", names[0])
            return []
        self.duel = choose_augment(names, lambda a: run_trial(replace(lead, augment=a), steps, "augmentation duel"),
                                   time.perf_counter)
        duel_rows = self.rows[-len(names):]
        for row in duel_rows:
            row.stage += ", chosen (its halving rung 0 run)" if row.augment == self.duel.chosen else ""
        won = next(e for e in self.duel.entries if e.augment == self.duel.chosen)
        return [Trial(replace(lead, augment=won.augment), 0, steps, won.val_top1, won.seconds, won.val_loss)]

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.datasets.train) // self.batch)

    def _first_rung_steps(self) -> int:
        return max(self.settings.min_steps, math.ceil(self.settings.rung_epochs * self.steps_per_epoch))

    def _run_prior(self, steps: int) -> float:
        """The seconds a run of ``steps`` is expected to take before any has run: a training step is about 3
        forward passes, plus its two passes over validation."""
        return 3 * self.seconds_per_batch * (steps + 2 * math.ceil(len(self.datasets.eval) / self.batch))

    def _first_run_affordable(self, seconds: float) -> bool:
        """Whether the halving's share of ``seconds`` (what the sweep leaves) pays for one first-rung run."""
        return self._run_prior(self._first_rung_steps()) <= self.settings.halving_share * seconds

    def _rung(self, steps: int, first: int) -> int:
        return round(math.log(steps / first, self.settings.eta)) if steps >= first else 0

    def _run_settings(self) -> RunSettings:
        s = self.settings
        best = self.sweep_best
        return RunSettings(model=self.model_source, data=self.data, image_size=self.image_size,
                           batch_size=self.batch, precision=self.precision, seed=s.seed, num_workers=s.num_workers,
                           val_fraction=s.val_fraction, cpu=s.cpu, probe_pooling=best.pooling,
                           probe_last_n=best.last_n)

    # -- 3. the winner, for as long as the budget allows
    def _final(self, halving: HalvingResult):
        from ..training import train

        s, data, budget = self.settings, self.datasets, self.budget
        winner = halving.winner
        last = halving.last_trial(winner)
        if last.val_top1 < 0 or not self.trial_metrics:  # every run failed or was cut short
            return None
        from ..methods import get_method
        from ..training.config import TrainConfig

        fixed, per_step = self._cost_model(winner)
        wise_ft = get_method(MENU[winner.method].method).has_plain_form
        # keep-best also scores step 0; WiSE-FT scores each of its alphas; LP-FT compares its result with its start
        guarded = MENU[winner.method].head_init == "probe"
        evaluations = s.evaluations + 1 + (len(TrainConfig.wise_ft_alphas) if wise_ft else 0) + (2 if guarded else 0)
        wrap_up = fixed + self.end_reserve
        # plan on 90% of what is left: the machine's speed varies between the measured runs and this one
        evaluation = per_step * math.ceil(len(data.eval) / self.batch)  # a pass over validation <= as many steps
        affordable = (FINAL_SAFETY * budget.remaining() - wrap_up - fixed - evaluations * evaluation) / per_step
        steps = min(self.max_steps, int(affordable))
        if steps < last.resource:
            self.budget_cut = (f"The halving's best, {winner.label} ({last.val_top1:.4f} on validation after "
                               f"{last.resource} steps), could not be retrained beyond its halving run in the "
                               f"{budget.remaining():.0f} s left; the probe was returned.")
            logger.warning("auto: %s", self.budget_cut)
            return None
        budget.stage(f"winner: {winner.label}, {steps} steps")
        folder = self.staging / "final"
        recipe = candidate_recipe(self._run_settings(), winner, steps, str(folder),
                                  eval_every=max(1, steps // s.evaluations), wise_ft=wise_ft,
                                  keep_start_within_noise=None)
        started = time.perf_counter()
        try:
            result = train(recipe, command="vit-transfer auto", hooks=[self._deadline_hook(reserve=wrap_up)])
        except _OutOfTime:
            self.rows.append(Row(winner.method, winner.lr, "lr", steps, steps / self.steps_per_epoch, float("nan"),
                                 time.perf_counter() - started, "final (stopped: out of time)",
                                 augment=winner.augment))
            shutil.rmtree(folder, ignore_errors=True)
            self.budget_cut = (f"The winner's run, {winner.label}, ran out of time before its {steps} planned steps "
                               "ended (the machine ran slower than its halving runs); the probe was returned.")
            logger.warning("auto: %s", self.budget_cut)
            return None
        m = result.metrics
        seconds = time.perf_counter() - started
        self.rows.append(Row(winner.method, winner.lr, "lr", steps, steps / self.steps_per_epoch,
                             float(m.get("finetuned_eval_top1", m["eval_top1"])), seconds,
                             f"final (keep-best: step {m.get('best_step')})", augment=winner.augment))
        if wise_ft:
            alpha = m.get("finetuned_wise_ft_alpha", m["wise_ft_alpha"])  # before a returned start set it to 0
            chosen = next(c for c in m["wise_ft_curve"] if c["alpha"] == alpha)
            self.rows.append(Row(f"{winner.method} + WiSE-FT", alpha, "alpha", steps,
                                 steps / self.steps_per_epoch, float(chosen["top1"]), 0.0, "final, interpolated",
                                 augment=winner.augment))
        if m.get("returned") == "start":  # train.keep_start_within_noise: the fine-tune was within noise of its start
            self.rows.append(Row(f"{winner.method} start", winner.lr, "lr", 0, 0.0, float(m["eval_top1"]), 0.0,
                                 "final, its start (the fine-tune was not clearly better)"))
        return folder, result, recipe

    def _deadline_hook(self, reserve: float = 0.0):
        """A training hook that stops a run (``_OutOfTime``) once it would take the search past its budget."""
        budget = self.budget

        def hook(state) -> None:
            if budget.elapsed() + reserve > OVERRUN * budget.seconds:
                raise _OutOfTime(f"step {state.step}")
        return hook

    def _cost_model(self, winner: Candidate) -> tuple[float, float]:
        """(seconds a run costs besides its steps, seconds per step) of the winner's method, from its halving runs:
        the median training seconds per step, and the median rest (loading, setup, evaluation, export)."""
        runs = [m for (c, _), m in self.trial_metrics.items() if c.method == winner.method] or list(
            self.trial_metrics.values())
        per_step = statistics.median(m["train_seconds"] / m["steps"] for m in runs)
        fixed = statistics.median(max(0.0, m["wall_seconds"] - m["train_seconds"]) for m in runs)
        return fixed, per_step

    # -- outputs
    def _write_train_recipe(self, recipe, folder: Path) -> None:
        """``recipe.yaml`` that ``vit-transfer train`` reproduces the winner with (test split back on)."""
        from ..training.run import write_recipe

        user = replace(recipe, data=replace(recipe.data, test_split=None),
                       output=replace(recipe.output, dir="runs/auto-winner", overwrite=False))
        write_recipe(user, folder / "recipe.yaml")

    def _write_probe(self, model, sweep: ProbeSweep, folder: Path) -> dict:
        """The probe as a run folder: model/ (backbone + probe head), run_info.json, recipe.yaml (vit-transfer probe)."""
        from ..config import save_recipe

        data = self.datasets
        original_size = model.original_image_size
        attach_probe(model, sweep, data.id2label)
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / "model")
        best = sweep.best
        write_json(folder / "run_info.json", {
            "base_model": model.source, "ecosystem": model.ecosystem, "image_size": list(model.image_size),
            "original_image_size": list(original_size), "patch_size": list(model.patch_size),
            "num_labels": model.num_labels, "id2label": {str(k): v for k, v in model.id2label.items()},
            "dataset": self.data, "method": "probe", "command": command_line() or "vit-transfer auto",
            "versions": library_versions(),
        })
        probe = replace(self.settings.probe, pooling=best.pooling, last_n=best.last_n, c_grid=[best.C])
        save_recipe(ProbeRecipe(model=ModelConfig(source=self.model_source, image_size=self.image_size),
                                data=DataConfig(source=self.data, val_fraction=self.settings.val_fraction,
                                                split_seed=self.settings.seed),
                                probe=probe, output_dir="runs/auto-probe", seed=self.settings.seed),
                    folder / "recipe.yaml")
        return {"eval_top1": sweep.val_top1, "eval_examples": len(data.eval), "probe_pooling": best.pooling,
                "probe_last_n": best.last_n, "probe_C": best.C, "train_examples": len(data.train)}

    def _score_test(self, model, folder: Path) -> dict:
        """The test split, once, on the returned model: ``evaluation/`` and ``test_*`` metrics, as ``train`` does."""
        if self.datasets.test is None:
            return {}
        from ..training.loop import test_metrics
        from ..training.run import TestReport

        self.budget.stage("test split (returned model only)")
        report = TestReport(self.datasets.test, self.datasets.id2label, acc=None, transform=None,  # the model's own
                            batch_size=self.batch, num_workers=self.settings.num_workers,
                            progress=self.settings.progress)
        metrics = test_metrics(report(model))
        report.write(folder, tensorboard=False, step=0)
        return metrics

    def _halving_dict(self, halving: HalvingResult) -> dict:
        return {"augment": self.duel.to_dict(),
                "ranking": [c.label for c in halving.ranking], "rungs_completed": halving.rungs_completed,
                "stopped_by_budget": halving.stopped_by_budget, "trials": [t.to_dict() for t in halving.trials]}


def describe_comparison(winner: str, paired: PairedComparison) -> str:
    """One sentence for the leaderboard: why the winner was, or was not, returned over the probe."""
    verdict = "more" if paired.clearly_better else "not more"
    return (f"On the {paired.images} validation images, {winner} alone is right on {paired.gains} and the best probe "
            f"alone on {paired.losses}: {verdict} than one standard error ({paired.z:.2f}) in the winner's favour, so "
            f"{'the winner' if paired.clearly_better else 'the best probe'} is returned.")


def read_auto(folder: "str | Path") -> dict:
    return json.loads((Path(folder) / AUTO_FILE).read_text())
