"""The one Accelerate training loop behind ``train``, the quickstart and the pretraining.

``TrainingRunner`` reads top to bottom as torchtune's recipes do: ``setup`` (accelerator, optimiser,
schedule, EMA, resume), ``train_step`` (one micro-batch; Accelerate's ``accumulate`` decides when the
optimiser steps), ``evaluate``, ``save_checkpoint``, ``train``. ``fit`` is the function form.
It trains whatever parameters require grad (full fine-tuning, head only, LoRA).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError, ConfigError, DataError
from ..runtime.accelerator import TRACKER_DIR, make_accelerator
from .checkpoints import (LOOP_STATE, checkpoint_step, delete_checkpoint, load_checkpoint, resolve_resume,
                          save_checkpoint, stale_checkpoints)
from .config import EvalConfig, OptimConfig, ScheduleConfig, TrainConfig
from .data_order import reproducible_loader
from ..runtime.evaluation import evaluate_model, prepare_eval_loader
from .keep_best import BestSoFar, changing_tensor_names
from .optim import build_optimizer
from .schedule import build_scheduler


@dataclass
class TrainState:
    """Where the run is; saved as JSON with each checkpoint so a resumed run continues mid-epoch."""

    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches this process has taken from the current epoch
    images_seen: int = 0  # by this process
    train_skipped: int = 0  # undecodable training images met in the first epoch, this process


@dataclass
class FitResult:
    """What ``fit`` returns: final metrics, the logged history, and the trained (unwrapped) model."""

    metrics: dict
    history: list[dict] = field(default_factory=list)
    model: nn.Module | None = None
    state: TrainState | None = None
    resumed_from: str | None = None


Hook = Callable[[TrainState], None]
TestScorer = Callable[[nn.Module], dict]  # the returned model -> {"top1", "top5", "loss", "num_examples", ...}


def test_metrics(scores: dict) -> dict:
    """``metrics.json``'s test entries from what a ``TestScorer`` returned."""
    return {**{f"test_{k}": scores[k] for k in ("top1", "top5", "loss")}, "test_examples": scores["num_examples"]}


def resolve_max_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps of the run, from ``max_steps`` or ``epochs`` (both validated by ``TrainConfig``)."""
    if cfg.max_steps is not None:
        return int(cfg.max_steps)
    steps_per_epoch = batches_per_epoch // cfg.grad_accum_steps
    if steps_per_epoch == 0:
        raise ConfigError(
            f"one epoch has {batches_per_epoch} batches per process, fewer than train.grad_accum_steps="
            f"{cfg.grad_accum_steps}; lower train.batch_size or train.grad_accum_steps"
        )
    return max(1, math.ceil(cfg.epochs * steps_per_epoch))


class TrainingRunner:
    """Train ``model`` on batches ``{"pixel_values", "labels"[, "num_skipped"]}``; evaluate on ``eval_loader``.

    ``train_loader`` is re-issued in a seeded order (see ``data_order``) so a run resumed from a
    checkpoint (``train.resume_from_checkpoint``) replays exactly the uninterrupted run's batches.
    ``batch_transform`` (mixup / cutmix) may turn labels into ``(B, K)`` soft targets. ``hooks`` run after
    every optimiser step (and checkpoint); an exception there stops the run like a crash would.
    A fresh run (no resume) refuses an ``output_dir`` that holds checkpoints unless ``overwrite``.

    Validation: ``eval_loader`` is scored at step 0, every ``eval.every_steps`` (every epoch when keep-best is
    on and it is unset) and at the end. ``train.keep_best`` (on by default with an ``eval_loader``) returns the
    best evaluation's weights (``keep_best.py``); ``train.early_stopping_patience`` stops after that many
    evaluations without a better one. ``test_scorer`` scores the returned model once, at the very end.
    """

    def __init__(self, model: nn.Module, train_loader, eval_loader=None, *, optim: OptimConfig | None = None,
                 schedule: ScheduleConfig | None = None, train: TrainConfig | None = None,
                 eval: EvalConfig | None = None, output_dir: "str | Path | None" = None,
                 test_scorer: TestScorer | None = None,
                 label_smoothing: float = 0.0, batch_transform: Callable[[dict], dict] | None = None,
                 accelerator=None, log_with: str = "none", tracker_config: dict | None = None,
                 hooks: Sequence[Hook] = (), overwrite: bool = False, desc: str = "train"):
        self.model, self.loaders, self.test_scorer = model, (train_loader, eval_loader), test_scorer
        self.optim, self.schedule = optim or OptimConfig(), schedule or ScheduleConfig()
        self.cfg, self.eval_cfg = train or TrainConfig(), eval or EvalConfig()
        self.output_dir, self.label_smoothing, self.batch_transform = output_dir, label_smoothing, batch_transform
        self.acc, self.log_with, self.tracker_config = accelerator, log_with, tracker_config
        self.hooks, self.overwrite, self.desc = hooks, overwrite, desc
        self.state, self.history, self.resumed_from = TrainState(), [], None
        if self.cfg.checkpoint_every and output_dir is None:
            raise ConfigError("train.checkpoint_every needs an output directory for the checkpoints")
        if eval_loader is None and self.cfg.keep_best:
            raise ConfigError("train.keep_best needs a validation split to choose on: set data.val_fraction > 0 "
                              "or data.eval_split, or train.keep_best=false")
        if eval_loader is None and self.cfg.early_stopping_patience:
            raise ConfigError("train.early_stopping_patience needs a validation split: set data.val_fraction > 0 "
                              "or data.eval_split")
        self.keep_best = eval_loader is not None and self.cfg.keep_best is not False
        self.stopped_early = False

    # --- setup --------------------------------------------------------------------------------
    def setup(self) -> None:
        """Accelerator, seeded loader, optimiser, schedule, EMA; then resume or claim the output folder."""
        from accelerate.utils import set_seed
        from timm.utils import ModelEmaV3

        cfg = self.cfg
        self.start_time = time.perf_counter()
        acc = self.acc = self.acc or make_accelerator(cfg.precision, cfg.cpu, self.log_with, self.output_dir,
                                                      cfg.grad_accum_steps)
        if acc.gradient_accumulation_steps != cfg.grad_accum_steps:
            raise ConfigError(f"the accelerator accumulates {acc.gradient_accumulation_steps} micro-batches, "
                              f"train.grad_accum_steps says {cfg.grad_accum_steps}: build it with make_accelerator")
        set_seed(cfg.seed)
        train_loader, eval_loader = self.loaders
        loader, self.sampler = reproducible_loader(train_loader, seed=cfg.seed)
        optimizer = build_optimizer(self.model, self.optim, acc.device.type)
        self.model, self.optimizer, self.loader = acc.prepare(self.model, optimizer, loader)
        self.eval_dl = prepare_eval_loader(acc, eval_loader) if eval_loader is not None else None
        self.unwrapped = acc.unwrap_model(self.model)
        self.best = BestSoFar(changing_tensor_names(self.unwrapped))
        self.evals: list[dict] = []  # the validation curve: {"step", "top1", "top5", "loss"}
        self.last_scores: dict | None = None  # the latest validation's full scores (this process's run only)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.compile:  # after prepare (DDP wraps first) and after model.attention was set; eval stays eager
            self.model = torch.compile(self.model)
        self.max_steps = resolve_max_steps(cfg, len(self.loader))
        self.eval_every = self.eval_cfg.every_steps
        if self.eval_every is None and self.keep_best:  # keep-best needs evaluations to choose from
            self.eval_every = max(1, len(self.loader) // cfg.grad_accum_steps)
        # timm's EMA, with warmup: a short run's average is not dominated by the initial weights
        self.ema = ModelEmaV3(self.unwrapped, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None

        resume = self._find_resume()
        if resume is None and self.output_dir is not None:
            self._claim_output_dir()
        start_step = self._resume(resume) if resume is not None else 0
        # built after the resume: a run resumed with more steps gets a schedule shaped for them
        self.scheduler = build_scheduler(self.optimizer, self.schedule, self.max_steps, start_step)
        if acc.log_with and acc.trackers == []:
            acc.init_trackers(TRACKER_DIR, config=_flat(self.tracker_config or {}))
        self.images_before = self.state.images_seen  # a resumed run times only its own images
        self.step_loss = torch.zeros((), device=acc.device)
        self.window_loss, self.window_steps = torch.zeros((), device=acc.device), 0
        self.recent_losses: deque = deque(maxlen=cfg.log_every)
        self.skipped_pending = torch.zeros((), dtype=torch.long, device=acc.device)
        self.eval_seconds = 0.0
        self.compile_seconds: float | None = None

    def _find_resume(self) -> Path | None:
        """The checkpoint to resume from; verified (every file hashed) by the main process alone."""
        from accelerate.utils import broadcast_object_list

        found = [resolve_resume(self.cfg.resume_from_checkpoint, self.output_dir) if self.acc.is_main_process
                 else None]
        if self.acc.num_processes > 1:
            broadcast_object_list(found)
        return found[0]

    def _resume(self, folder: Path) -> int:
        """Weights, optimiser, RNG streams, EMA and counters from ``folder``; returns the schedule's step."""
        state, step = load_checkpoint(self.acc, folder, self.ema)
        if checkpoint_step(folder) not in (None, state["step"]):
            raise CheckpointError(f"{folder} holds step {state['step']}, not the step its name says")
        if not self.acc.is_main_process:  # the saved image counts are totals over processes, kept by rank 0
            state.update(images_seen=0, train_skipped=0)
        self.state = TrainState(**state)
        saved = json.loads((folder / LOOP_STATE).read_text())
        self.evals = list(saved.get("evals", []))
        if self.keep_best and saved.get("best") is not None:
            self.best.load(saved["best"], folder)
            patience = self.cfg.early_stopping_patience  # a run that had stopped early stays stopped
            self.stopped_early = bool(patience and self.best.evals_since >= patience)
        self.resumed_from = str(folder)
        self.acc.print(f"resumed from {folder} at step {self.state.step} "
                       f"(epoch {self.state.epoch}, batch {self.state.batch_in_epoch})")
        return step

    def _claim_output_dir(self) -> None:
        """Delete an earlier run's checkpoints (``overwrite``) before a fresh run writes its own."""
        old = stale_checkpoints(self.output_dir, self.overwrite)
        if old:
            self.acc.wait_for_everyone()
            if self.acc.is_main_process:
                for path in old:
                    delete_checkpoint(path)  # fails loudly: a checkpoint left behind would be picked by `latest`
            self.acc.wait_for_everyone()

    # --- one micro-batch ----------------------------------------------------------------------
    def train_step(self, batch: dict) -> bool:
        """Forward and backward one micro-batch; returns whether the optimiser stepped."""
        acc = self.acc
        with acc.accumulate(self.model):
            if batch["labels"].shape[0] > 0:
                if self.batch_transform is not None:
                    batch = self.batch_transform(batch)
                # train.compile: torch's automatic dynamic shapes specialise the first graph to the batch size
                # (fastest); a batch of another size (undecodable images dropped) recompiles once, into a graph
                # with a symbolic batch dimension that every later size reuses
                logits = self.model(batch["pixel_values"]).float()
                loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
            else:  # keep the processes in step: a zero-weight pass through every trainable weight
                shape = tuple(batch["pixel_values"].shape[1:])
                if 0 in shape:
                    shape = (3, *self.unwrapped.preprocessing.image_size)
                dummy = torch.zeros(1, *shape, dtype=batch["pixel_values"].dtype, device=acc.device)
                loss = self.model(dummy).float().sum() * 0.0
            acc.backward(loss)  # divided by grad_accum_steps by Accelerate
            if acc.sync_gradients and self.optim.clip_grad_norm:
                acc.clip_grad_norm_(self.trainable, self.optim.clip_grad_norm)
            self.optimizer.step()  # no-ops between accumulation boundaries
            self.optimizer.zero_grad(set_to_none=True)
        self.step_loss += loss.detach() / self.cfg.grad_accum_steps
        if not acc.sync_gradients:
            return False
        if not acc.optimizer_step_was_skipped:
            self.scheduler.step()
        self.state.step += 1
        if self.ema is not None:
            self.ema.update(self.unwrapped, step=self.state.step)
        return True

    # --- evaluation and checkpoints -----------------------------------------------------------
    def evaluated_module(self) -> nn.Module:
        """The weights that are scored and returned: the EMA's when there is one, else the model's.
        The unwrapped model: DDP would sync buffers before each forward, and the shards are uneven."""
        return self.ema.module if self.ema is not None else self.unwrapped

    def evaluate(self, loader, desc: str = "eval") -> dict:
        started = time.perf_counter()
        scores = evaluate_model(self.evaluated_module(), loader, self.acc, desc)
        self.eval_seconds += time.perf_counter() - started
        return scores

    def validate(self) -> dict:
        """Score the validation split now; log it, add it to the curve, offer it to keep-best."""
        step = self.state.step
        scores = self.last_scores = self.evaluate(self.eval_dl)
        self.evals.append({"step": step, **{k: scores[k] for k in ("top1", "top5", "loss")}})
        self.history.append({"step": step, **{f"eval_{k}": v for k, v in scores.items()}})
        self.acc.log({f"eval/{k}": scores[k] for k in ("top1", "top5", "loss")}, step=step)
        if self.keep_best:
            self.best.offer(step, scores, self.evaluated_module())
            patience = self.cfg.early_stopping_patience
            if patience and self.best.evals_since >= patience:
                self.stopped_early = True
                self.acc.print(f"early stopping at step {step}: no better validation top-1 in {patience} "
                               f"evaluations (best {self.best.scores['top1']:.4f} at step {self.best.step})")
        return scores

    def save_checkpoint(self) -> Path:
        started = time.perf_counter()
        self.state.train_skipped += int(self.skipped_pending)
        self.skipped_pending.zero_()
        state = asdict(self.state)  # image counts summed over the processes: a resume may use another number
        counts = torch.tensor([state["images_seen"], state["train_skipped"]], device=self.acc.device)
        state["images_seen"], state["train_skipped"] = self.acc.reduce(counts, reduction="sum").tolist()
        loop_state = {"state": state, "scheduler_step": self.scheduler.last_epoch, "evals": self.evals,
                      "best": self.best.to_state() if self.keep_best else None}
        path = save_checkpoint(self.acc, self.output_dir, self.state.step, self.cfg.keep_checkpoints, loop_state,
                               self.ema, write_extra=self.best.save_weights if self.keep_best else None)
        self.eval_seconds += time.perf_counter() - started
        return path

    # --- the loop -----------------------------------------------------------------------------
    def train(self) -> FitResult:
        """Run to ``max_steps``, then the final evaluation. Returns metrics: ``eval_top1``, ``eval_top5``,
        ``eval_loss``, ``train_loss``, ``steps``, ``seconds``, ``images_per_second``, ``skipped_images``, ..."""
        self.setup()
        state, acc = self.state, self.acc
        self.progress = tqdm(total=self.max_steps, initial=state.step, desc=self.desc,
                             disable=not acc.is_local_main_process, dynamic_ncols=True)
        if self.eval_dl is not None and state.step == 0 and (self.keep_best or self.eval_every):
            self.validate()  # where the run starts: keep-best never returns less (LP-FT starts at the probe)
        self.model.train()
        self.train_start = time.perf_counter()
        while state.step < self.max_steps and not self.stopped_early:
            started_at, learned_from = state.batch_in_epoch, 0  # batches with at least one image
            for batch in self._epoch_batches():
                state.batch_in_epoch += 1
                if "num_skipped" in batch and state.epoch == 0:
                    self.skipped_pending += batch["num_skipped"].to(acc.device)  # no host sync per batch
                rows = batch["labels"].shape[0]
                if rows == 0 and acc.num_processes == 1:
                    continue  # every image of this batch was undecodable: nothing to learn from
                learned_from += rows > 0
                state.images_seen += rows
                if self.train_step(batch):
                    if self.cfg.compile and self.compile_seconds is None:  # the first step compiles: timed apart
                        now = time.perf_counter()
                        self.compile_seconds, self.train_start = now - self.train_start, now
                        self.images_before = state.images_seen
                    self._after_optimizer_step()
                    if state.step >= self.max_steps or self.stopped_early:
                        break
            else:
                self._end_epoch(started_at, learned_from)
        self.progress.close()
        return self._finish()

    def _epoch_batches(self):
        loader = self.loader
        if self.state.batch_in_epoch:
            loader = self.acc.skip_first_batches(loader, self.state.batch_in_epoch)
        # Accelerate's loaders re-set the sampler's epoch from their own pass counter when iterated:
        # set both, so a resumed run (a fresh skip-loader) shuffles as epoch `state.epoch` did
        self.sampler.set_epoch(self.state.epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.state.epoch)
        return loader

    def _end_epoch(self, started_at: int, learned_from: int) -> None:
        state, acc = self.state, self.acc
        if state.batch_in_epoch == 0:
            raise ConfigError("the training loader yielded no batches: the train split is smaller than one batch")
        if started_at == 0:
            total = torch.tensor(learned_from, device=acc.device)
            if int(acc.reduce(total, reduction="sum")) == 0:
                raise DataError("a whole pass over the training data had no decodable image; check the dataset")
        state.epoch += 1
        state.batch_in_epoch = 0

    def _after_optimizer_step(self) -> None:
        """Log, evaluate, checkpoint and run the hooks as the recipe asks."""
        state, cfg, acc = self.state, self.cfg, self.acc
        self.progress.update(1)
        self.recent_losses.append(self.step_loss.clone())
        self.window_loss += self.step_loss
        self.window_steps += 1
        self.step_loss.zero_()
        if state.step % cfg.log_every == 0 or state.step == self.max_steps:
            mean = (acc.reduce(self.window_loss, reduction="mean") / self.window_steps).item()
            lr = self.optimizer.param_groups[-1]["lr"]
            self.history.append({"step": state.step, "train_loss": mean, "lr": lr})
            acc.log({"train/loss": mean, "train/lr": lr}, step=state.step)
            self.progress.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
            self.window_loss.zero_()
            self.window_steps = 0
        every = self.eval_every
        if self.eval_dl is not None and every and state.step % every == 0 and state.step < self.max_steps:
            self.validate()  # the final evaluation comes after the loop
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        for hook in self.hooks:
            hook(state)

    def _finish(self) -> FitResult:
        """Put the EMA (or keep-best's) weights in the model, score eval, test once, gather the run's totals."""
        state, acc = self.state, self.acc
        train_seconds = time.perf_counter() - self.train_start - self.eval_seconds
        if self.ema is not None:  # from here on the model *is* the averaged model (evaluated and saved)
            self.unwrapped.load_state_dict(self.ema.module.state_dict())
            self.ema = None
        state.train_skipped += int(self.skipped_pending)
        metrics: dict = {}
        skipped_eval = 0
        if self.eval_dl is not None:
            if self.evals and self.evals[-1]["step"] == state.step:  # scored already (an early stop): not re-offered
                scores = self.last_scores or self.evaluate(self.eval_dl)  # a resumed run re-scores for the counts
            else:
                scores = self.validate()
            if self.keep_best and self.best.step is not None:
                if self.best.step != state.step:
                    self.best.restore(self.unwrapped)
                    acc.print(f"keep-best: returning the weights of step {self.best.step} (validation top-1 "
                              f"{self.best.scores['top1']:.4f}), not step {state.step}'s ({scores['top1']:.4f})")
                scores = self.best.scores
                metrics["best_step"] = self.best.step
            metrics.update({f"eval_{k}": scores[k] for k in ("top1", "top5", "loss")})
            metrics["eval_examples"] = scores["num_examples"]
            skipped_eval += scores["skipped_images"]
            metrics["eval_curve"] = list(self.evals)
            metrics["stopped_early"] = self.stopped_early
        if self.test_scorer is not None:  # once, on the model this run returns
            scores = self.test_scorer(self.unwrapped)
            metrics.update(test_metrics(scores))
            skipped_eval += scores["skipped_images"]
        totals = torch.tensor([state.images_seen, state.images_seen - self.images_before, state.train_skipped],
                              device=acc.device)
        images, timed, skipped_train = acc.reduce(totals, reduction="sum").tolist()
        final_loss = float("nan")
        if self.recent_losses:
            final_loss = acc.reduce(torch.stack(list(self.recent_losses)).mean(), reduction="mean").item()
        metrics.update({
            "train_loss": final_loss,
            "steps": state.step,
            "seconds": time.perf_counter() - self.start_time,
            "train_seconds": train_seconds,
            "images_per_second": timed / train_seconds if train_seconds > 0 else float("nan"),
            "images_seen": images,
            "skipped_images": skipped_train + skipped_eval,
            "num_processes": acc.num_processes,
            "precision": acc.mixed_precision,
            "fused_optimizer": bool(self.optimizer.defaults.get("fused")),
        })
        if self.cfg.compile:
            metrics["compile_seconds"] = self.compile_seconds
        if self.eval_dl is not None or self.test_scorer is not None:
            acc.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.step)
        self.history.append({"step": state.step, **{k: v for k, v in metrics.items()
                                                    if k.startswith(("eval_", "test_")) and not isinstance(v, list)}})
        if acc.log_with:
            acc.end_training()
        return FitResult(metrics=metrics, history=self.history, model=self.unwrapped, state=state,
                         resumed_from=self.resumed_from)


def fit(model: nn.Module, train_loader, eval_loader=None, **options) -> FitResult:
    """``TrainingRunner(model, train_loader, eval_loader, **options).train()``: the function form."""
    return TrainingRunner(model, train_loader, eval_loader, **options).train()


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested recipe -> flat scalars for tracker hyper-parameters (TensorBoard takes no lists or None)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        else:
            out[name] = str(value)
    return out
