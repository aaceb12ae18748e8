"""The probe protocol end to end: features (cached) -> linear probe + few-shot -> results and a classifier.

``probe_model`` works on a loaded model and ``ImageDatasets`` (library use, no recipe file);
``linear_probe`` is the recipe-driven entry point behind ``vit-transfer probe``.

Split roles. With a test split: C is chosen on eval, the probe is refitted on train + eval and
reported on test. Without one: C is chosen on a stratified slice of train, the probe is refitted on
all of train and reported on eval. Few-shot draws its shots from train and reports on the same split.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..caller_state import accelerate_state, seeded_torch_rng
from ..data.splits import stratified_split
from ..errors import DataError
from .cache import FeatureCache, cached_features, model_digest
from .config import ProbeConfig, ProbeRecipe
from .features import Features, check_pooling, resolved_precision
from .fewshot import fewshot_lsr
from .head import attach_linear_head, head_agreement
from .logistic import LogisticRegression, fit_logistic_regression, select_C, topk_accuracy
from .results import LinearProbeResult, ProbeResult

SPLITS = ("train", "eval", "test")
HEAD_TOLERANCE = 1e-3  # relative logit difference above which the saved classifier is flagged


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, held_out)`` row indices: ``data.stratified_split`` of ``labels`` (the one stratified split)."""
    keep, held = stratified_split(labels.cpu().numpy(), fraction, seed)
    return torch.from_numpy(keep), torch.from_numpy(held)


def run_linear_probe(
    features: dict[str, Features], num_labels: int, config: ProbeConfig, seed: int = 0, device=None,
    choose_on_eval: bool = False,
) -> tuple[LinearProbeResult, LogisticRegression]:
    """Choose C on validation, refit, report top-1/top-5 (the split roles are in the module docstring).

    ``choose_on_eval``: C chosen on eval, the probe fitted on train alone and reported on eval, so eval stays
    out of every fit (LP-FT: the fine-tune's keep-best chooses on the same split)."""
    train = features["train"]
    if choose_on_eval:
        if "eval" not in features:
            raise DataError("choosing C on the validation split needs one; set data.val_fraction > 0 or data.eval_split")
        report = "eval"
    elif "test" in features:
        report = "test"
    elif "eval" in features:
        report = "eval"
    else:
        raise DataError("the linear probe needs an eval or a test split to report on; set data.eval_split "
                        "or data.test_split, or keep data.val_fraction > 0")
    if choose_on_eval or (report == "test" and "eval" in features):
        fit_x, fit_y = train.features, train.labels
        val_x, val_y = features["eval"].features, features["eval"].labels
        selection, refit = "eval", ["train"] if choose_on_eval else ["train", "eval"]
    else:  # the eval split is the report split: choose C on a slice of train instead
        keep, held = stratified_holdout(train.labels, config.val_fraction, seed)
        if len(held) == 0:
            raise DataError("too few training images to hold out a validation set for choosing C; "
                            "raise probe.val_fraction or give an eval split")
        fit_x, fit_y = train.features[keep], train.labels[keep]
        val_x, val_y = train.features[held], train.labels[held]
        selection, refit = f"train ({config.val_fraction:.0%} held out)", ["train"]
    search = select_C(
        fit_x, fit_y, val_x, val_y, num_labels, grid=config.c_grid, exponents=tuple(config.c_exponents),
        steps=config.c_steps, refine_steps=config.c_refine_steps, max_iter=config.max_iter, device=device,
    )
    if choose_on_eval:  # fitted on train alone, as the search's fits: the search's own fit, not a refit
        probe = search.best_fit
    else:  # refitted on more images, warm-started from the search's fit (the path its score was measured on)
        all_x = torch.cat([features[s].features for s in refit])
        all_y = torch.cat([features[s].labels for s in refit])
        probe = fit_logistic_regression(all_x, all_y, search.best_C, num_labels, max_iter=config.max_iter,
                                        init=search.best_fit, device=device)
    logits = probe.logits(features[report].features)
    top5_k = min(5, num_labels)
    result = LinearProbeResult(
        C=search.best_C, val_top1=search.best_val_top1, selection_split=selection, report_split=report,
        top1=topk_accuracy(logits, features[report].labels, 1), top5=topk_accuracy(logits, features[report].labels, top5_k),
        top5_k=top5_k, refit_on=refit, sweep=search.trials,
    )
    return result, probe


def probe_model(
    model,
    datasets,
    config: ProbeConfig | None = None,
    *,
    output_dir: "str | Path | None" = None,
    seed: int = 0,
    cache: FeatureCache | None = None,
    num_workers: int = 0,
    accelerator=None,
    progress: bool = True,
) -> ProbeResult:
    """Probe a loaded ``TransferModel`` on ``ImageDatasets`` (``load_image_datasets``); no recipe needed.

    ``cache`` defaults to ``FeatureCache(config.cache_dir)`` when ``config.cache`` is true. With
    ``output_dir`` the results, the probe weights and (``config.save_model``, ``last_n == 1``) the
    model with the probe as its classifier are written there; the model's head is replaced then.
    Under ``accelerate launch`` every process returns the same result.
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from ..data import build_transform

    config = config or ProbeConfig()
    pooling = config.pooling or "cls"
    check_pooling(pooling, config.last_n)
    accelerator = accelerator or Accelerator()
    start = time.perf_counter()
    transform = build_transform(model.preprocessing, train=False)
    if cache is None and config.cache:
        cache = FeatureCache(config.cache_dir)
    model_hash = model_digest(model) if cache is not None else None

    features: dict[str, Features] = {}
    status: dict[str, str] = {}
    for split in SPLITS:
        dataset = getattr(datasets, split, None)
        if dataset is None:
            continue
        features[split], hit = cached_features(
            model, dataset, datasets.fingerprint(split) if cache is not None else "", cache, transform,
            pooling=pooling, last_n=config.last_n, batch_size=config.batch_size, precision=config.precision,
            num_workers=num_workers, accelerator=accelerator, model_hash=model_hash, progress=progress,
            desc=f"{split} features",
        )
        status[split] = "off" if cache is None else ("hit" if hit else "miss")
    if "train" not in features or len(features["train"]) == 0:
        raise DataError("the probe needs a non-empty train split")
    seconds = {"features": time.perf_counter() - start}

    result = None
    if accelerator.is_main_process:
        result = _evaluate(model, datasets, features, status, seconds, config, pooling, seed,
                           accelerator.device, transform, output_dir, start)
    if accelerator.num_processes > 1:
        result = broadcast_object_list([result])[0]
    return result


def _evaluate(model, datasets, features, status, seconds, config, pooling, seed, device, transform, output_dir, start):
    num_labels = int(datasets.num_labels)
    report = "test" if "test" in features else "eval" if "eval" in features else None
    result = ProbeResult(
        model=str(getattr(model, "source", "") or type(model).__name__), pooling=pooling, last_n=config.last_n,
        image_size=list(model.image_size), precision=resolved_precision(config.precision, device),
        feature_dim=features["train"].dim, num_labels=num_labels,
        samples={k: len(v) for k, v in features.items()}, skipped={k: v.num_skipped for k, v in features.items()},
        cache=status, seconds=seconds,
    )
    for split, f in features.items():
        if f.num_skipped:
            result.notes.append(f"{f.num_skipped} undecodable image(s) skipped in {split}")
    probe = None
    if config.linear:
        t = time.perf_counter()
        result.linear, probe = run_linear_probe(features, num_labels, config, seed, device)
        seconds["linear"] = time.perf_counter() - t
        if num_labels < 5:
            result.notes.append(f"top-5 is top-{num_labels}: only {num_labels} classes")
        lo, hi = config.c_exponents
        if not config.c_grid and not 10.0 ** lo < result.linear.C < 10.0 ** hi:
            result.notes.append(f"the chosen C={result.linear.C:.3g} is at the edge of the search range "
                                f"10**{lo:g}..10**{hi:g}; widen probe.c_exponents to search further")
    if config.fewshot and config.shots:
        if report is None:
            result.notes.append("few-shot skipped: no eval or test split to report on")
        else:
            t = time.perf_counter()
            train, target = features["train"], features[report]
            few = fewshot_lsr(train.features, train.labels, target.features, target.labels, config.shots,
                              num_draws=config.fewshot_draws, seed=seed, l2=config.fewshot_l2,
                              num_classes=num_labels, device=device)
            result.fewshot, result.fewshot_split, result.fewshot_l2 = few.scores, report, config.fewshot_l2
            result.notes += few.notes
            seconds["fewshot"] = time.perf_counter() - t
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if probe is not None:
            _save_probe(model, datasets, probe, config, pooling, transform, report, output_dir, result)
    seconds["total"] = time.perf_counter() - start
    if output_dir is not None:
        result.save(Path(output_dir) / "probe_results.json")
    return result


def _save_probe(model, datasets, probe, config, pooling, transform, report, output_dir: Path, result) -> None:
    """``linear_head.safetensors`` always; ``model/`` (the backbone + probe as classifier) when it can serve it."""
    from safetensors.torch import save_file

    weight, bias = probe.folded()
    save_file(
        {"weight": weight.cpu().contiguous(), "bias": bias.cpu().contiguous(), "mean": probe.mean.cpu().contiguous(),
         "std": probe.std.cpu().contiguous()},
        str(output_dir / "linear_head.safetensors"),
        metadata={"pooling": pooling, "last_n": str(config.last_n), "C": repr(probe.C),
                  "note": "weight/bias act on raw pooled features (standardisation folded in)"},
    )
    if not config.save_model:
        return
    if config.last_n != 1:
        result.notes.append(
            f"no classifier saved: the probe reads the last {config.last_n} blocks, a model head reads one; "
            "the probe weights are in linear_head.safetensors"
        )
        return
    attach_linear_head(model, weight, bias, datasets.id2label, pooling)
    pixels = _sample_pixels(getattr(datasets, report) if report else datasets.train, transform)
    if pixels is not None:
        gap = head_agreement(model, pixels, weight, bias, pooling)
        if gap > HEAD_TOLERANCE:
            result.notes.append(
                f"the saved classifier's logits differ from the probe's by {gap:.2g} (relative): this backbone's "
                "classification path is not the feature path (e.g. timm attention pooling); prefer linear_head.safetensors"
            )
    model.save(output_dir / "model")
    result.model_dir = str(output_dir / "model")


def _sample_pixels(dataset, transform, n: int = 8) -> torch.Tensor | None:
    images = []
    for i in range(min(len(dataset), 4 * n)):
        image, _ = dataset[i]
        if image is not None:
            images.append(transform(image))
        if len(images) == n:
            break
    return torch.stack(images) if images else None


def linear_probe(recipe: ProbeRecipe, *, accelerator=None, progress: bool = True) -> ProbeResult:
    """``vit-transfer probe``: load the recipe's model and data, probe, write ``recipe.output_dir``."""
    from accelerate import Accelerator

    with contextlib.ExitStack() as scope:  # an accelerator of our own leaves the caller's Accelerate state alone
        if accelerator is None:
            scope.enter_context(accelerate_state())
            accelerator = Accelerator()
        return _run_recipe(recipe, accelerator, progress)


def _run_recipe(recipe: ProbeRecipe, accelerator, progress: bool) -> ProbeResult:
    from ..config import save_recipe
    from ..data import load_image_datasets
    from ..models import load_vit_from_config

    with seeded_torch_rng(recipe.seed):  # the recipe's seed fixes the run; the caller's stream is left alone
        datasets = load_image_datasets(recipe.data)
        model = load_vit_from_config(recipe.model, num_labels=datasets.num_labels, id2label=datasets.id2label,
                                     seed=recipe.seed)
        config = replace(recipe.probe, pooling=recipe.probe.pooling or recipe.model.pooling or "cls")
        result = probe_model(model, datasets, config, output_dir=recipe.output_dir, seed=recipe.seed,
                             num_workers=recipe.data.num_workers, accelerator=accelerator, progress=progress)
    result.dataset = recipe.data.source
    if accelerator.is_main_process:
        output_dir = Path(recipe.output_dir)
        save_recipe(replace(recipe, probe=config), output_dir / "recipe.yaml")
        result.save(output_dir / "probe_results.json")
    return result
