"""``evaluate``: where a trained classifier goes wrong on a labelled split, as numbers and pictures.

One sharded pass (``score_dataset``) gives every image's top-5 classes; ``report.py`` turns them into
top-1/top-5, the loss, scikit-learn's per-class report, the confusion matrix and the most confused
pairs; ``figures.py`` draws the row-normalised matrix and a contact sheet of the most confidently
wrong images. ``write`` puts it all in a folder::

    evaluation.json        every number (and the undecodable images, with the reason)
    confusion_matrix.png   rows: true class, columns: predicted, colour: share of the row
    confidently_wrong.png  the N wrong predictions with the highest probability
    predictions.csv        path, true, predicted, probability for every image

Dataset labels are matched to the model's by name, so a split whose classes are numbered in another
order (or a subset of the model's classes) is scored correctly.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .figures import confusion_figure, contact_sheet, figure_pixels, save_figure
from .loading import load_trained_model
from .report import classification_numbers, report_classes
from .scoring import Scores, describe_item, score_dataset

EVALUATION_FILE = "evaluation.json"
CONFUSION_FILE = "confusion_matrix.png"
WRONG_FILE = "confidently_wrong.png"
PREDICTIONS_FILE = "predictions.csv"


class LabelNamesWarning(UserWarning):
    """The dataset's class names are not the model's; labels are matched by number instead."""


def model_label_ids(data_id2label: "dict[int, str] | None", model_id2label: "dict[int, str]") -> np.ndarray:
    """``ids[d]`` = the model's class id for dataset class ``d``: by name when every dataset class is one of
    the model's, else by number when the counts agree (with a ``LabelNamesWarning``), else a ``DataError``."""
    model_names = {str(name): int(i) for i, name in model_id2label.items()}
    if not data_id2label:
        return np.arange(len(model_id2label), dtype=np.int64)
    size = max(data_id2label) + 1
    if all(str(name) in model_names for name in data_id2label.values()):
        ids = np.full(size, -1, dtype=np.int64)
        for i, name in data_id2label.items():
            ids[int(i)] = model_names[str(name)]
        return ids
    if len(data_id2label) == len(model_id2label):
        missing = [str(n) for n in data_id2label.values() if str(n) not in model_names][:5]
        warnings.warn(f"the dataset's class names ({', '.join(missing)}, ...) are not the model's "
                      f"({', '.join(list(model_names)[:5])}, ...): labels are matched by number",
                      LabelNamesWarning, stacklevel=3)
        return np.arange(size, dtype=np.int64)
    raise DataError(
        f"the dataset has {len(data_id2label)} classes ({', '.join(list(map(str, data_id2label.values()))[:5])}, ...) "
        f"that are not among the model's {len(model_id2label)} ({', '.join(list(model_names)[:5])}, ...): "
        "evaluate the model on data with its own label set"
    )


@dataclass
class EvaluationResult:
    """Everything ``evaluation.json`` holds (``numbers``) plus what the pictures are drawn from."""

    numbers: dict
    scores: Scores
    y_true: np.ndarray  # the model's class id of each scored image (rows of ``scores``)
    id2label: dict[int, str]  # the model's class names
    dataset: object = field(repr=False, default=None)

    @property
    def confusion_matrix(self) -> np.ndarray:
        return np.asarray(self.numbers["confusion_matrix"], dtype=np.int64)

    def correct(self) -> dict[int, bool]:
        """``{dataset position: the top-1 prediction is right}`` for every scored image (paired comparisons)."""
        right = self.scores.top_ids[:, 0].numpy() == self.y_true
        return {int(p): bool(r) for p, r in zip(self.scores.positions.tolist(), right)}

    def confusion_figure(self):
        return confusion_figure(self.confusion_matrix, self.numbers["classes"])

    def confusion_pixels(self) -> np.ndarray:
        return figure_pixels(self.confusion_figure())

    def write(self, output_dir: "str | Path") -> dict[str, Path]:
        """The folder described in the module docstring; returns ``{kind: path}``."""
        from ..runs.files import write_json

        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"confusion_matrix": save_figure(self.confusion_figure(), out / CONFUSION_FILE)}
        wrong = self.numbers["confidently_wrong"]
        if wrong:
            images = [self.dataset.load_image(w["position"]) if hasattr(self.dataset, "load_image")
                      else self.dataset[w["position"]][0] for w in wrong]
            captions = [f"{Path(w['path']).name}\ntrue {w['true']}\npredicted {w['predicted']} ({w['probability']:.2f})"
                        for w in wrong]
            files["confidently_wrong"] = save_figure(
                contact_sheet(images, captions, title="most confidently wrong"), out / WRONG_FILE)
        files["predictions"] = out / PREDICTIONS_FILE
        _write_predictions(self, files["predictions"])
        files["evaluation"] = write_json(out / EVALUATION_FILE, {
            **self.numbers, "files": {k: p.name for k, p in files.items()}})
        return files


def evaluate(
    model,
    dataset,
    id2label: "dict[int, str] | None" = None,
    *,
    output_dir: "str | Path | None" = None,
    batch_size: int = 64,
    num_workers: int = 0,
    precision: str = "no",
    accelerator=None,
    num_confused: int = 20,
    num_wrong: int = 16,
    progress: bool = True,
    desc: str = "evaluate",
    transform=None,
) -> EvaluationResult:
    """Score ``model`` on ``dataset`` (an ``ImageDataset`` with ``.labels``; ``id2label`` its class names).

    Under ``accelerate launch`` every process scores a shard and gets the whole result; only the main
    process writes ``output_dir``. ``transform`` defaults to the model's eval transform (uint8 out).
    """
    from ..runtime.accelerator import scoped_accelerator

    model = load_trained_model(model)
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    to_model = model_label_ids(id2label, model.id2label)
    targets = to_model[np.asarray(labels, dtype=np.int64)]
    if (targets < 0).any():
        raise DataError("a dataset label has no class name in id2label")
    with contextlib.ExitStack() as scope:  # an accelerator of our own leaves the caller's Accelerate state alone
        accelerator = accelerator or scope.enter_context(scoped_accelerator(precision))
        scores = score_dataset(model, dataset, accelerator, transform=transform, batch_size=batch_size, top_k=5,
                               targets=targets, num_workers=num_workers, progress=progress, desc=desc)
        main_process = accelerator.is_main_process
    y_true = targets[scores.positions.numpy()]
    top_ids = scores.top_ids.numpy()
    names = model.id2label
    classes = report_classes(np.unique(targets), top_ids[:, 0])
    numbers = classification_numbers(y_true, top_ids, names, classes, scores.target_log_probs.numpy(), num_confused)
    numbers["skipped_images"] = len(scores.skipped)
    numbers["skipped"] = [{"path": s.name, "reason": s.reason} for s in scores.skipped]
    numbers["confidently_wrong"] = _confidently_wrong(dataset, scores, y_true, names, num_wrong)
    result = EvaluationResult(numbers, scores, y_true, dict(names), dataset)
    if output_dir is not None and main_process:
        result.write(output_dir)
    return result


def _confidently_wrong(dataset, scores: Scores, y_true: np.ndarray, names: dict, limit: int) -> list[dict]:
    predicted, probability = scores.top_ids[:, 0].numpy(), scores.top_probs[:, 0].numpy()
    wrong = np.flatnonzero(predicted != y_true)
    wrong = wrong[np.argsort(-probability[wrong], kind="stable")][:limit]
    return [{"position": int(scores.positions[i]), "path": describe_item(dataset, int(scores.positions[i])),
             "true": names.get(int(y_true[i]), str(int(y_true[i]))),
             "predicted": names.get(int(predicted[i]), str(int(predicted[i]))),
             "probability": float(probability[i])} for i in wrong]


def _write_predictions(result: EvaluationResult, path: Path) -> None:
    import csv

    names, scores = result.id2label, result.scores
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "true", "predicted", "probability"])
        for position, true, predicted, probability in zip(scores.positions.tolist(), result.y_true.tolist(),
                                                          scores.top_ids[:, 0].tolist(), scores.top_probs[:, 0].tolist()):
            writer.writerow([describe_item(result.dataset, position), names.get(true, str(true)),
                             names.get(predicted, str(predicted)), f"{probability:.6g}"])


def load_split(source: str, split: str = "test", *, image_column: str = "image", label_column: str = "label",
               format: str = "auto", hub_config: "str | None" = None, max_samples: "int | None" = None):
    """``(dataset, id2label)``: one split of any data source ``vit-transfer train`` reads, optionally capped
    (class proportions kept)."""
    from ..data import DataConfig, stratified_subset
    from ..data.sources import read_source

    cfg = DataConfig(source=source, format=format, image_column=image_column, label_column=label_column,
                     hub_config=hub_config)
    found = read_source(cfg)
    if split not in found.splits:
        raise DataError(f"split {split!r} not found in {source}; available splits: {', '.join(found.splits)} "
                        "(pick one with --split)")
    dataset = found.splits[split]
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.subset(stratified_subset(dataset.labels, max_samples, 0))
    return dataset, dict(found.id2label)
