"""``train(recipe)``: data + model + method from a recipe, the ``fit`` loop, and the run folder.

The run folder (``output.dir``) is the contract with ``push`` and the quickstart::

    model/  adapter/  metrics.json  evaluation/  recipe.yaml  run_info.json  checkpoints/step_XXXXXXXX/  logs/

``evaluation/`` is the test split's report, as ``vit-transfer evaluate`` writes it (per-class report,
confusion matrix, most confused pairs, contact sheet of the most confidently wrong images).

``recipe.yaml`` and ``run_info.json`` are written before training starts, the model and the final
metrics at the end; every file goes through a temp name and a rename, so a run that dies leaves
the previous complete files (and its checkpoints) behind, never half-written ones.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from ..adapters.peft_adapter import AdapterHandle
from ..config import to_dict
from ..errors import ConfigError
from ..methods import prepare_method
from ..methods.base import save_plain_model
from ..models import load_vit_from_config
from ..runtime.accelerator import TRACKER_DIR, make_accelerator
from .checkpoints import list_checkpoints
from .loop import FitResult, Hook, fit, test_metrics
from ..runs.files import (RUN_RESULTS, clear_run_outputs, command_line, earlier_run_outputs, library_versions, replace_dir,
                      write_json)
from .recipe import TrainRecipe


@dataclass
class TrainResult:
    """A finished run: where its folder is, its metrics, and the trained ``TransferModel``."""

    output_dir: Path
    metrics: dict
    model: object = None
    history: list[dict] = field(default_factory=list)
    resumed_from: str | None = None
    method: object = None  # vit_transfer.methods.PreparedMethod

    @property
    def adapter(self) -> "AdapterHandle | None":
        """The peft adapter handle (LoRA or any peft tuner) of ``method``, else None."""
        return getattr(self.method, "adapter", None)


def micro_batch_size(batch_size: int, num_processes: int, grad_accum_steps: int) -> int:
    """Images per process per forward pass, from the global batch of one optimiser step."""
    per = num_processes * grad_accum_steps
    if batch_size % per:
        raise ConfigError(
            f"train.batch_size={batch_size} is not divisible by {num_processes} process(es) x "
            f"train.grad_accum_steps={grad_accum_steps}; pick a batch size that is a multiple of {per}"
        )
    return batch_size // per


def run_info(recipe: TrainRecipe, model, original_size, command: str | None) -> dict:
    return {
        "base_model": model.source,
        "ecosystem": model.ecosystem,
        "image_size": list(model.image_size),
        "original_image_size": list(original_size),
        "patch_size": list(model.patch_size),
        "num_labels": model.num_labels,
        "id2label": {str(k): v for k, v in model.id2label.items()},
        "dataset": recipe.data.source,
        "method": recipe.method,
        "command": command if command is not None else command_line(),
        "versions": library_versions(),
    }


def claim_run_folder(out: Path, recipe: TrainRecipe, acc) -> None:
    """A fresh run owns its folder: an earlier run's results (``runs.files.RUN_RESULTS``) are an error, or are
    cleared with ``output.overwrite``, so no file of another run (an old ``adapter/``, ``evaluation/``)
    survives into this one. A resumed run continues its own folder.

    Every process looks and meets the others at both barriers, whatever it found: the main process alone
    deletes, and it writes ``recipe.yaml`` only after the second barrier."""
    resume = recipe.train.resume_from_checkpoint
    if resume and not (resume == "latest" and not list_checkpoints(out)):
        return
    acc.wait_for_everyone()
    results = earlier_run_outputs(out, RUN_RESULTS)
    if results and not recipe.output.overwrite:
        names = ", ".join(p.name for p in results)
        raise ConfigError(
            f"{out} already holds an earlier run ({names}); continue its checkpoints with "
            "train.resume_from_checkpoint=latest, start over with output.overwrite=true (deletes those), "
            "or pick another output.dir"
        )
    acc.wait_for_everyone()  # every process has looked before the main one deletes
    if acc.is_main_process:
        clear_run_outputs(earlier_run_outputs(out))
    acc.wait_for_everyone()


def write_recipe(recipe: TrainRecipe, path: Path) -> Path:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
    os.replace(tmp, path)
    return path


def train(recipe: TrainRecipe, *, hooks: Sequence[Hook] = (), command: str | None = None) -> TrainResult:
    """Fine-tune with ``recipe.method`` (docs/methods.md) as ``recipe`` says and write the run folder.

    Works the same in one process and under ``accelerate launch`` (every process calls it).
    """
    from ..data import build_transform, load_image_datasets, make_dataloader, mixup_cutmix
    from ..data.decode_cache import cache_decoded

    out = Path(recipe.output.dir)
    t = recipe.train
    acc = make_accelerator(t.precision, t.cpu, recipe.output.log_with, out, t.grad_accum_steps)
    micro = micro_batch_size(t.batch_size, acc.num_processes, t.grad_accum_steps)
    claim_run_folder(out, recipe, acc)  # before recipe.yaml of an earlier run is replaced
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_recipe(recipe, out / "recipe.yaml")

    with acc.main_process_first():  # downloads and caches happen once
        data = load_image_datasets(recipe.data)
    if t.wise_ft and data.eval is None:
        raise ConfigError("train.wise_ft chooses its alpha on the validation split: set data.val_fraction > 0 "
                          "or data.eval_split")
    guard = guards_start(recipe, data.eval is not None)  # train.keep_start_within_noise, resolved
    model = load_vit_from_config(recipe.model, data.num_labels, data.id2label, t.seed)
    original_size = model.original_image_size
    method_metrics = {}
    dc = recipe.data
    # uint8 batches at the worker size; the model normalises (and resizes) them on its device
    eval_tf = build_transform(model.preprocessing, False, normalize=False, size=dc.host_image_size)
    if recipe.model.head_init == "probe":  # LP-FT: before the method wraps the head
        from .lp_ft import init_head_from_probe

        probe = init_head_from_probe(model, data, batch_size=recipe.eval.batch_size or micro, precision=t.precision,
                                     num_workers=dc.num_workers, seed=t.seed, accelerator=acc, transform=eval_tf)
        method_metrics = probe.metrics()
        acc.print(f"LP-FT: the head starts from the linear probe (C={probe.C:.3g}, val top-1 {probe.val_top1})")
    # WiSE-FT's start: the pretrained backbone with the initial head, in the plain model's keys
    start = {k: v.detach().clone() for k, v in model.state_dict().items()} if t.wise_ft else None
    # the start itself, for returning it when the fine-tune is not clearly better (LP-FT: the probe); copied from
    # host memory (fit moves the model back to its device), so the device never holds two copies here
    start_model = copy.deepcopy(model.cpu()) if guard else None
    prepared = prepare_method(model, recipe.method, recipe.method_options())
    acc.print(prepared.summary())
    info = run_info(recipe, model, original_size, command)
    if acc.is_main_process:
        write_json(out / "run_info.json", info)

    global_batch = micro * acc.num_processes
    if len(data.train) < global_batch:
        raise ConfigError(
            f"the train split has {len(data.train)} images, fewer than one step's batch of {global_batch} "
            f"(train.batch_size / train.grad_accum_steps); lower train.batch_size"
        )
    train_ds, eval_ds, test_ds = (cache_decoded(split, dc.decode_cache_mib, role)
                                  for split, role in ((data.train, "train"), (data.eval, "eval"), (data.test, "test")))
    train_tf = build_transform(model.preprocessing, True, recipe.augment, normalize=False, size=dc.host_image_size)
    train_loader = make_dataloader(train_ds, train_tf, micro, shuffle=True, seed=t.seed, num_workers=dc.num_workers,
                                   drop_last=True, balance=dc.balance)
    eval_bs = recipe.eval.batch_size or micro
    eval_loader = (make_dataloader(eval_ds, eval_tf, eval_bs, shuffle=False, num_workers=dc.num_workers)
                   if eval_ds is not None else None)
    test_report = TestReport(test_ds, data.id2label, acc, eval_tf, eval_bs, dc.num_workers) if test_ds is not None else None
    mixing = recipe.augment.mixup_alpha > 0 or recipe.augment.cutmix_alpha > 0
    batch_transform = None
    if mixing:  # mixing works on the prepared (float, model-sized) pixels
        def batch_transform(batch: dict) -> dict:
            batch = {**batch, "pixel_values": model.prepare_pixels(batch["pixel_values"])}
            return mixup_cutmix(batch, data.num_labels, recipe.augment)

    after_fit = t.wise_ft or start_model is not None  # the returned model is decided after fit: test it then
    result: FitResult = fit(
        model, train_loader, eval_loader, test_scorer=None if after_fit else test_report,
        optim=recipe.optim, schedule=recipe.schedule, train=t, eval=recipe.eval, output_dir=out,
        label_smoothing=recipe.augment.label_smoothing, batch_transform=batch_transform, accelerator=acc,
        tracker_config=to_dict(recipe), hooks=hooks, overwrite=recipe.output.overwrite,
    )
    model = result.model
    metrics = dict(result.metrics)
    if t.wise_ft:
        model = wise_ft(model, start, recipe, eval_loader, acc, metrics)
    if start_model is not None:
        model = keep_start_within_noise(model, start_model, eval_ds, data.id2label, eval_tf, eval_bs, dc.num_workers,
                                        acc, metrics)
    if after_fit and test_report is not None:  # the test split is scored once, on the model the run returns
        scores = test_report(model)
        metrics.update(test_metrics(scores))
        metrics["skipped_images"] += scores["skipped_images"]
    if test_report is not None and acc.is_main_process:
        test_report.write(out, tensorboard=recipe.output.log_with == "tensorboard", step=metrics["steps"])
    metrics.update({**prepared.metrics(), **method_metrics})

    if acc.is_main_process:
        from ..methods import get_method

        # export a copy: merging (LoRA, SSF) or turning prompts into registers must not change the model this
        # call returns, nor make the main process's model differ from the others'
        if t.wise_ft or metrics.get("returned") == "start":  # plain models: no adapter form
            save_plain_model(model, out)
        else:
            get_method(recipe.method).export(copy.deepcopy(model), prepared, out, recipe.method_options())
        write_json(out / "run_info.json", info)
        write_json(out / "metrics.json", metrics)
        if recipe.output.push_to_hub:
            push(out, recipe)
    acc.wait_for_everyone()
    return TrainResult(output_dir=out, metrics=metrics, model=model, history=result.history,
                       resumed_from=result.resumed_from, method=prepared)


def wise_ft(model, start: dict, recipe: TrainRecipe, eval_loader, acc, metrics: dict):
    """The run's model in plain form, interpolated with ``start`` at the alpha that validation prefers
    (``training/wise_ft.py``); ``metrics`` get the choice, the curve, and the fine-tune's own validation top-1."""
    from ..methods import get_method
    from ..runtime.evaluation import evaluate_model, prepare_eval_loader
    from .wise_ft import choose_alpha

    plain = get_method(recipe.method).plain_copy(model)
    if plain is None:
        raise ConfigError(f"train.wise_ft needs the trained model in plain form; method {recipe.method!r} "
                          "(or this peft tuner) has none: it cannot be merged into the weights")
    eval_dl = prepare_eval_loader(acc, eval_loader)
    choice = choose_alpha(plain, start, recipe.train.wise_ft_alphas,
                          lambda m: evaluate_model(m, eval_dl, acc, "WiSE-FT"))
    metrics["finetuned_eval_top1"] = metrics["eval_top1"]
    metrics.update({f"eval_{k}": choice.scores[k] for k in ("top1", "top5", "loss")}, **choice.metrics())
    acc.print(f"WiSE-FT: alpha {choice.alpha} (validation top-1 {choice.scores['top1']:.4f}; "
              f"the fine-tune alone {metrics['finetuned_eval_top1']:.4f})")
    return plain


def guards_start(recipe: TrainRecipe, has_validation: bool) -> bool:
    """``train.keep_start_within_noise`` resolved: null is on for LP-FT runs that have a validation split."""
    wanted = recipe.train.keep_start_within_noise
    if wanted and not has_validation:
        raise ConfigError("train.keep_start_within_noise compares the fine-tune with its start on the validation "
                          "split: set data.val_fraction > 0 or data.eval_split, or train.keep_start_within_noise=false")
    if wanted is None:
        return has_validation and recipe.model.head_init == "probe" and recipe.train.keep_best is not False
    return bool(wanted)


def keep_start_within_noise(model, start_model, eval_ds, id2label: dict, transform, batch_size: int,
                            num_workers: int, acc, metrics: dict):
    """``model``, or ``start_model`` when ``model`` does not beat it on the validation images by more than one
    standard error of the paired difference (``vit_transfer.selection``): an LP-FT run whose fine-tune gained a
    lucky image or two returns its probe. ``metrics`` get the comparison and, if the start wins, its scores."""
    from ..inference import evaluate
    from ..selection import compare_paired

    options = dict(accelerator=acc, batch_size=batch_size, num_workers=num_workers, transform=transform,
                   progress=False)
    tuned = evaluate(model, eval_ds, id2label, desc="validation: fine-tune", **options)
    start = evaluate(start_model, eval_ds, id2label, desc="validation: start", **options)
    paired = compare_paired(tuned.correct(), start.correct())
    metrics["finetune_vs_start"] = {**paired.to_dict(), "finetune_top1": tuned.numbers["top1"],
                                    "start_top1": start.numbers["top1"]}
    if paired.clearly_better:
        metrics["returned"] = "fine-tune"
        start_model.cpu()
        return model
    # the start is step 0 (and WiSE-FT's alpha 0): the metrics say so; the fine-tune's own choices are kept aside
    metrics["returned"] = "start"
    metrics.setdefault("finetuned_eval_top1", metrics["eval_top1"])
    if "best_step" in metrics:
        metrics["finetuned_best_step"], metrics["best_step"] = metrics["best_step"], 0
    if "wise_ft_alpha" in metrics:
        metrics["finetuned_wise_ft_alpha"], metrics["wise_ft_alpha"] = metrics["wise_ft_alpha"], 0.0
    metrics.update({f"eval_{k}": start.numbers[k] for k in ("top1", "top5", "loss")})
    acc.print(f"keep_start_within_noise: the start is returned (validation top-1 {start.numbers['top1']:.4f}); the "
              f"fine-tune ({tuned.numbers['top1']:.4f}) is right on {paired.gains} image(s) the start misses and "
              f"wrong on {paired.losses} it gets: not more than one standard error ({paired.z:.2f})")
    return start_model


EVALUATION_DIR = "evaluation"


class TestReport:
    """The test split scored once, on the model the run returns: the loop's ``test_scorer`` (top-1, top-5, loss
    for ``metrics.json``) and, from the same pass and the same transform as validation, ``out/evaluation``
    (per-class report, confusion matrix, ...); so both files hold one number."""

    def __init__(self, split, id2label: dict, acc, transform, batch_size: int, num_workers: int,
                 progress: bool = True):
        self.split, self.id2label, self.acc, self.transform = split, id2label, acc, transform
        self.batch_size, self.num_workers, self.progress, self.result = batch_size, num_workers, progress, None

    def __call__(self, model) -> dict:
        from ..inference import evaluate

        self.result = evaluate(model, self.split, self.id2label, accelerator=self.acc, batch_size=self.batch_size,
                               num_workers=self.num_workers, transform=self.transform, progress=self.progress,
                               desc="test")
        numbers = self.result.numbers
        return {**{k: numbers[k] for k in ("top1", "top5", "loss", "num_examples")},
                "skipped_images": numbers["skipped_images"]}

    def write(self, out: Path, tensorboard: bool, step: int) -> None:
        """``out/evaluation`` (atomically); the confusion matrix also goes to TensorBoard when the run logs there."""
        replace_dir(self.result.write, out / EVALUATION_DIR)
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(out / TRACKER_DIR)) as writer:
                writer.add_image("test/confusion_matrix", self.result.confusion_pixels(), step, dataformats="HWC")


def push(output_dir: Path, recipe: TrainRecipe) -> None:
    """Upload the finished run folder (main process only); the hub module is imported only here."""
    from ..hub import push_run

    push_run(output_dir, repo_id=recipe.output.hub_repo_id, private=recipe.output.hub_private,
             revision=recipe.output.hub_revision)
