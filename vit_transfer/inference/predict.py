"""``predict``: the top-k labels and probabilities of a trained classifier for image files, folders or tables.

Images go through the model's own eval transform (``build_transform(model.preprocessing, train=False)``,
at the model's current size) in batches; undecodable ones are kept as rows with the reason instead of
predictions. Output: ``.csv`` (``path, label_1, probability_1, ..., error``) or ``.jsonl``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError
from .images import collect_images
from .loading import load_trained_model
from .scoring import score_dataset

OUTPUT_FORMATS = (".csv", ".jsonl")


@dataclass
class Prediction:
    """One input image: its path, the top-k labels and probabilities, or why it could not be read."""

    path: str
    labels: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "labels": self.labels, "probabilities": self.probabilities}


@dataclass
class PredictionResult:
    """One ``Prediction`` per input image, in input order (undecodable images included, with ``error``)."""

    predictions: list[Prediction]
    top_k: int

    @property
    def failures(self) -> list[Prediction]:
        return [p for p in self.predictions if p.error is not None]

    def write(self, path: "str | Path") -> Path:
        """``.csv`` or ``.jsonl`` by the file's suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise ConfigError(f"predictions go to a .csv or .jsonl file, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_csv() if suffix == ".csv" else self.to_jsonl())
        return path

    def to_jsonl(self) -> str:
        return "".join(json.dumps(p.to_dict()) + "\n" for p in self.predictions)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        ranks = range(1, self.top_k + 1)
        writer.writerow(["path", *[f"{c}_{r}" for r in ranks for c in ("label", "probability")], "error"])
        for p in self.predictions:
            cells = [v for pair in zip(p.labels, p.probabilities) for v in (pair[0], f"{pair[1]:.6g}")]
            writer.writerow([p.path, *cells, *[""] * (2 * self.top_k - len(cells)), p.error or ""])
        return out.getvalue()


def predict(
    model,
    images: "str | Path | Iterable[str | Path]",
    top_k: int = 5,
    batch_size: int = 32,
    *,
    image_column: str = "image",
    num_workers: int = 0,
    precision: str = "no",
    accelerator=None,
    progress: bool = True,
) -> PredictionResult:
    """Predict ``images`` (files, folders searched recursively, CSV/parquet tables) with ``model``.

    ``model`` is a ``TransferModel`` or anything ``load_trained_model`` loads (a run folder, an adapter
    folder, a Hub id, a timm name, the shipped model). Under ``accelerate launch`` the batches are
    sharded over the processes and every process returns the whole result.
    """
    from ..data import FileImageDataset
    from ..runtime.accelerator import scoped_accelerator

    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    model = load_trained_model(model)
    refs = collect_images(images, image_column)
    dataset = FileImageDataset(refs, np.zeros(len(refs), dtype=np.int64), name="images")
    with contextlib.ExitStack() as scope:  # an accelerator of our own leaves the caller's Accelerate state alone
        accelerator = accelerator or scope.enter_context(scoped_accelerator(precision))
        scores = score_dataset(model, dataset, accelerator, batch_size=batch_size, top_k=top_k,
                               num_workers=num_workers, progress=progress)
    names = model.id2label
    rows: list[Prediction | None] = [None] * len(dataset)
    for position, ids, probs in zip(scores.positions.tolist(), scores.top_ids.tolist(), scores.top_probs.tolist()):
        rows[position] = Prediction(dataset.describe(position), [names.get(i, str(i)) for i in ids], probs)
    for skipped in scores.skipped:
        rows[skipped.position] = Prediction(skipped.name, error=skipped.reason)
    return PredictionResult(rows, top_k=int(scores.top_ids.shape[1]))
