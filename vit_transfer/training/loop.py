"""``fit``: the one Accelerate training loop behind ``train``, the quickstart and the pretraining.

It trains whatever parameters of the model require grad (full fine-tuning, head only, LoRA) for
a number of optimiser steps, with gradient accumulation, global-norm clipping, warmup + decay,
mixed precision, optional EMA, periodic evaluation and atomic, resumable checkpoints.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError, ConfigError, DataError
from .accelerator import TRACKER_DIR, make_accelerator
from .checkpoints import checkpoint_step, resolve_resume, save_checkpoint, stale_checkpoints
from .config import EvalConfig, OptimConfig, ScheduleConfig, TrainConfig
from .data_order import reproducible_loader
from .ema import WeightEma
from .evaluation import evaluate_model
from .loss import classification_loss
from .metrics import load_topk_accuracy
from .optim import build_optimizer
from .schedule import build_scheduler


@dataclass
class TrainState:
    """Where the run is; checkpointed with the weights so a resumed run continues mid-epoch."""

    step: int = 0  # optimiser steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # batches this process has taken from the current epoch
    images_seen: int = 0  # by this process
    train_skipped: int = 0  # undecodable training images met in the first epoch, this process

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, int(value))


@dataclass
class FitResult:
    """What ``fit`` returns: final metrics, the logged history, and the trained (unwrapped) model."""

    metrics: dict
    history: list[dict] = field(default_factory=list)
    model: nn.Module | None = None
    state: TrainState | None = None
    resumed_from: str | None = None


Hook = Callable[[TrainState], None]


def resolve_max_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps of the run, from ``max_steps`` or ``epochs``."""
    if cfg.max_steps is not None:
        if cfg.max_steps <= 0:
            raise ConfigError(f"train.max_steps must be positive, got {cfg.max_steps}")
        return int(cfg.max_steps)
    if cfg.epochs is None or cfg.epochs <= 0:
        raise ConfigError("set train.max_steps (optimiser steps) or train.epochs (a positive number)")
    steps_per_epoch = batches_per_epoch // cfg.grad_accum_steps
    if steps_per_epoch == 0:
        raise ConfigError(
            f"one epoch has {batches_per_epoch} batches per process, fewer than train.grad_accum_steps="
            f"{cfg.grad_accum_steps}; lower train.batch_size or train.grad_accum_steps"
        )
    return max(1, math.ceil(cfg.epochs * steps_per_epoch))


def _num_labels(model: nn.Module, num_labels: int | None) -> int:
    if num_labels is not None:
        return num_labels
    if hasattr(model, "num_labels"):
        return int(model.num_labels)
    raise ValueError("pass num_labels= to fit for a model without a num_labels attribute")


def _image_shape(model: nn.Module) -> tuple[int, int]:
    pre = getattr(model, "preprocessing", None)
    return tuple(pre.image_size) if pre is not None else (224, 224)


def fit(
    model: nn.Module,
    train_loader,
    eval_loader=None,
    *,
    optim: OptimConfig | None = None,
    schedule: ScheduleConfig | None = None,
    train: TrainConfig | None = None,
    eval: EvalConfig | None = None,
    output_dir: "str | Path | None" = None,
    test_loader=None,
    label_smoothing: float = 0.0,
    batch_transform: Callable[[dict], dict] | None = None,
    num_labels: int | None = None,
    accelerator=None,
    log_with: str = "none",
    tracker_config: dict | None = None,
    hooks: Sequence[Hook] = (),
    overwrite: bool = False,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` on batches ``{"pixel_values", "labels"[, "num_skipped"]}``; evaluate on ``eval_loader``.

    ``train_loader`` is re-issued in a seeded order (see ``data_order``) so a run resumed from a
    checkpoint (``train.resume_from_checkpoint``) replays exactly the uninterrupted run's batches.
    ``batch_transform`` (mixup / cutmix) may turn labels into ``(B, K)`` soft targets. ``hooks`` run after
    every optimiser step (and checkpoint); an exception there stops the run like a crash would.
    A fresh run (no resume) refuses an ``output_dir`` that holds checkpoints unless ``overwrite``.
    Returns final metrics: ``eval_top1``, ``eval_top5``, ``eval_loss``, ``train_loss``, ``steps``,
    ``seconds``, ``images_per_second``, ``skipped_images`` (and ``test_*`` with a test loader).
    """
    optim, schedule = optim or OptimConfig(), schedule or ScheduleConfig()
    train, eval = train or TrainConfig(), eval or EvalConfig()
    if train.grad_accum_steps < 1:
        raise ConfigError(f"train.grad_accum_steps must be >= 1, got {train.grad_accum_steps}")
    if train.checkpoint_every and output_dir is None:
        raise ConfigError("train.checkpoint_every needs an output directory for the checkpoints")
    start_time = time.perf_counter()
    acc = accelerator or make_accelerator(train.precision, train.cpu, log_with, output_dir)
    from accelerate.utils import set_seed

    set_seed(train.seed)
    labels_k = _num_labels(model, num_labels)
    image_shape = _image_shape(model)

    loader, sampler = reproducible_loader(train_loader, seed=train.seed)
    optimizer = build_optimizer(model, optim)
    prepared = acc.prepare(model, optimizer, loader, *(dl for dl in (eval_loader, test_loader) if dl is not None))
    model, optimizer, loader = prepared[:3]
    rest = list(prepared[3:])
    eval_dl = rest.pop(0) if eval_loader is not None else None
    test_dl = rest.pop(0) if test_loader is not None else None
    unwrapped = acc.unwrap_model(model)

    max_steps = resolve_max_steps(train, len(loader))
    scheduler = build_scheduler(optimizer, schedule, max_steps)
    state = TrainState()
    ema = WeightEma(unwrapped, train.ema_decay) if train.ema_decay else None
    acc.register_for_checkpointing(state, scheduler, *([ema] if ema else []))

    resume = resolve_resume(train.resume_from_checkpoint, output_dir)
    if resume is None and output_dir is not None:
        _claim_output_dir(acc, output_dir, overwrite)
    if resume is not None:
        try:
            acc.load_state(str(resume))
        except (FileNotFoundError, RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {resume}: {exc}") from exc
        if checkpoint_step(resume) not in (None, state.step):
            raise CheckpointError(f"{resume} holds step {state.step}, not the step its name says")
        acc.print(f"resumed from {resume} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")

    images_before = state.images_seen  # a resumed run times only its own images
    if acc.trackers == [] and acc.log_with:
        acc.init_trackers(TRACKER_DIR, config=_flat(tracker_config or {}))

    metric = load_topk_accuracy()
    history: list[dict] = []
    recent_losses: deque = deque(maxlen=max(1, train.log_every))
    window_loss, window_steps = torch.zeros((), device=acc.device), 0
    step_loss = torch.zeros((), device=acc.device)
    skipped_pending = torch.zeros((), dtype=torch.long, device=acc.device)
    accum = train.grad_accum_steps
    micro = 0
    eval_seconds = 0.0
    trainable = [p for p in model.parameters() if p.requires_grad]
    progress = tqdm(total=max_steps, initial=state.step, desc=desc, disable=not acc.is_local_main_process,
                    dynamic_ncols=True)
    model.train()
    train_start = time.perf_counter()

    def run_eval(tag: str, dl) -> dict:
        with ema.swapped_in() if ema else nullcontext():
            return evaluate_model(model, dl, acc, labels_k, metric, desc=tag)

    while state.step < max_steps:
        epoch_batches = acc.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        # Accelerate's loaders re-set the sampler's epoch from their own pass counter when iterated:
        # set both, so a resumed run (a fresh skip-loader) shuffles as epoch `state.epoch` did
        sampler.set_epoch(state.epoch)
        if hasattr(epoch_batches, "set_epoch"):
            epoch_batches.set_epoch(state.epoch)
        finished_epoch = True
        learned_from = 0  # batches with at least one image in this pass
        started_at = state.batch_in_epoch
        for batch in epoch_batches:
            state.batch_in_epoch += 1
            skipped = batch.get("num_skipped")
            if skipped is not None and state.epoch == 0:
                skipped_pending += skipped.to(acc.device)  # no host sync per batch; folded in at checkpoints
            rows = batch["labels"].shape[0]
            if rows == 0 and acc.num_processes == 1:
                continue  # every image of this batch was undecodable: nothing to learn from
            learned_from += rows > 0
            micro += 1
            sync = micro % accum == 0
            with nullcontext() if sync or acc.num_processes == 1 else acc.no_sync(model):
                if rows > 0:
                    if batch_transform is not None:
                        batch = batch_transform(batch)
                    logits = model(batch["pixel_values"])
                    loss = classification_loss(logits, batch["labels"], label_smoothing)
                else:  # keep the processes in step: a zero-weight pass through every trainable weight
                    dummy = torch.zeros(1, 3, *image_shape, device=acc.device)
                    loss = model(dummy).float().sum() * 0.0
                acc.backward(loss / accum)
            step_loss += loss.detach() / accum
            state.images_seen += rows
            if not sync:
                continue
            if optim.clip_grad_norm:
                acc.clip_grad_norm_(trainable, optim.clip_grad_norm)
            optimizer.step()
            if not acc.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update()
            state.step += 1
            progress.update(1)
            recent_losses.append(step_loss.clone())
            window_loss += step_loss
            window_steps += 1
            step_loss.zero_()

            if state.step % max(1, train.log_every) == 0 or state.step == max_steps:
                mean = (acc.reduce(window_loss, reduction="mean") / window_steps).item()
                lr = optimizer.param_groups[-1]["lr"]
                history.append({"step": state.step, "train_loss": mean, "lr": lr})
                acc.log({"train/loss": mean, "train/lr": lr}, step=state.step)
                progress.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
                window_loss.zero_()
                window_steps = 0
            due = eval.every_steps and state.step % eval.every_steps == 0 and state.step < max_steps
            if eval_dl is not None and due:  # the final evaluation comes after the loop
                t0 = time.perf_counter()
                scores = run_eval("eval", eval_dl)
                eval_seconds += time.perf_counter() - t0
                history.append({"step": state.step, **{f"eval_{k}": v for k, v in scores.items()}})
                acc.log({f"eval/{k}": scores[k] for k in ("top1", "top5", "loss")}, step=state.step)
            if train.checkpoint_every and state.step % train.checkpoint_every == 0:
                t0 = time.perf_counter()
                state.train_skipped += int(skipped_pending)
                skipped_pending.zero_()
                save_checkpoint(acc, output_dir, state.step, train.keep_checkpoints)
                eval_seconds += time.perf_counter() - t0
            for hook in hooks:
                hook(state)
            if state.step >= max_steps:
                finished_epoch = False
                break
        if finished_epoch:
            if state.batch_in_epoch == 0:
                raise ConfigError("the training loader yielded no batches: the train split is smaller than one batch")
            if started_at == 0:
                total = torch.tensor(learned_from, device=acc.device)
                if (int(acc.reduce(total, reduction="sum")) if acc.num_processes > 1 else learned_from) == 0:
                    raise DataError("a whole pass over the training data had no decodable image; check the dataset")
            state.epoch += 1
            state.batch_in_epoch = 0
    progress.close()
    train_seconds = time.perf_counter() - train_start - eval_seconds

    metrics: dict = {}
    if ema is not None:
        ema.copy_to_model()  # from here on the model *is* the averaged model (evaluated and saved)
    state.train_skipped += int(skipped_pending)
    skipped_total = torch.tensor(state.train_skipped, device=acc.device)
    if eval_dl is not None:
        scores = evaluate_model(model, eval_dl, acc, labels_k, metric)
        metrics.update({"eval_top1": scores["top1"], "eval_top5": scores["top5"], "eval_loss": scores["loss"],
                        "eval_examples": scores["num_examples"]})
        skipped_eval = scores["skipped_images"]
    else:
        skipped_eval = 0
    if test_dl is not None:
        scores = evaluate_model(model, test_dl, acc, labels_k, metric)
        metrics.update({"test_top1": scores["top1"], "test_top5": scores["top5"], "test_loss": scores["loss"],
                        "test_examples": scores["num_examples"]})
        skipped_eval += scores["skipped_images"]
    final_loss = torch.stack(list(recent_losses)).mean() if recent_losses else torch.tensor(float("nan"))
    final_loss = acc.reduce(final_loss.to(acc.device), reduction="mean").item() if recent_losses else float("nan")
    images = int(acc.reduce(torch.tensor(state.images_seen, device=acc.device), reduction="sum").item())
    timed = int(acc.reduce(torch.tensor(state.images_seen - images_before, device=acc.device), reduction="sum").item())
    skipped_train = int(acc.reduce(skipped_total, reduction="sum").item())
    metrics.update({
        "train_loss": final_loss,
        "steps": state.step,
        "seconds": time.perf_counter() - start_time,
        "train_seconds": train_seconds,
        "images_per_second": timed / train_seconds if train_seconds > 0 else float("nan"),
        "images_seen": images,
        "skipped_images": skipped_train + skipped_eval,
        "num_processes": acc.num_processes,
        "precision": acc.mixed_precision,
    })
    if eval_dl is not None or test_dl is not None:
        acc.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.step)
    history.append({"step": state.step, **{k: v for k, v in metrics.items() if k.startswith(("eval_", "test_"))}})
    if acc.log_with:
        acc.end_training()
    return FitResult(metrics=metrics, history=history, model=acc.unwrap_model(model), state=state,
                     resumed_from=str(resume) if resume else None)


def _claim_output_dir(acc, output_dir, overwrite: bool) -> None:
    """Delete an earlier run's checkpoints (``overwrite``) before a fresh run writes its own."""
    old = stale_checkpoints(output_dir, overwrite)
    if not old:
        return
    acc.wait_for_everyone()
    if acc.is_main_process:
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
    acc.wait_for_everyone()


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
