"""Top-k accuracy as an ``evaluate`` metric module, loaded by path so it works offline.

``evaluate.load("accuracy")`` fetches its script from the Hub; this module ships with the package.
Predictions are each example's class indices ranked by score (best first, at least ``k`` of them),
references the true class; ``compute(k=(1, 5))`` returns ``{"top1": ..., "top5": ...}``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of examples whose true class is among the k highest-scoring predictions."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of ranked class indices per example (best first).
    references: list of true class indices.
    k: the cut-offs to report (default (1, 5)); a cut-off above the number of ranked classes counts
       every class (so top-5 over 3 classes is 1.0).
Returns:
    {"top1": float, "top5": float, ...} in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopkAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        ranked = np.asarray(predictions, dtype=np.int64).reshape(len(references), -1)
        truth = np.asarray(references, dtype=np.int64)[:, None]
        if len(truth) == 0:
            return {f"top{int(c)}": float("nan") for c in k}
        hits = ranked == truth
        return {f"top{int(c)}": float(hits[:, : int(c)].any(axis=1).mean()) for c in k}
