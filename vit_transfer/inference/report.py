"""The numbers of an evaluation, from true and predicted class ids: scikit-learn does the counting.

Top-1/top-5 and the loss, ``classification_report`` (per-class precision, recall, F1, support, as a
dict) and ``confusion_matrix`` over one list of classes: the dataset's classes plus any other class
the model predicted (so every example is in the matrix and the rows sum to the supports).
"""

from __future__ import annotations

import numpy as np


def report_classes(dataset_classes: "np.ndarray", y_pred: "np.ndarray") -> np.ndarray:
    """The classes the report covers, ascending model class ids."""
    return np.union1d(np.asarray(dataset_classes, dtype=np.int64), np.asarray(y_pred, dtype=np.int64))


def classification_numbers(y_true: np.ndarray, top_ids: np.ndarray, names: "dict[int, str]",
                           classes: np.ndarray, target_log_probs: "np.ndarray | None" = None,
                           num_confused: int = 20) -> dict:
    """``top1``, ``top5``, ``loss``, ``per_class`` (scikit-learn's report), ``confusion_matrix`` and
    ``most_confused`` for predictions ``top_ids`` ``(N, k)`` (most probable first) of labels ``y_true``."""
    from sklearn.metrics import classification_report, confusion_matrix

    y_true = np.asarray(y_true, dtype=np.int64)
    top_ids = np.asarray(top_ids, dtype=np.int64).reshape(len(y_true), -1)
    y_pred = top_ids[:, 0]
    class_names = [names.get(int(c), str(int(c))) for c in classes]
    n = len(y_true)
    matrix = confusion_matrix(y_true, y_pred, labels=classes) if n else np.zeros((len(classes),) * 2, dtype=np.int64)
    report = classification_report(y_true, y_pred, labels=classes, target_names=class_names, output_dict=True,
                                   zero_division=0) if n else {}
    nan = float("nan")
    return {
        "num_examples": n,
        "top1": float((y_pred == y_true).mean()) if n else nan,
        "top5": float((top_ids[:, :5] == y_true[:, None]).any(axis=1).mean()) if n else nan,
        "loss": float(-np.mean(target_log_probs)) if n and target_log_probs is not None else nan,
        "classes": class_names,
        "per_class": report,
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused(matrix, class_names, num_confused),
    }


def most_confused(matrix: np.ndarray, class_names: "list[str]", limit: int = 20) -> list[dict]:
    """The off-diagonal cells with the most examples: ``{"true", "predicted", "count", "fraction"}``,
    where ``fraction`` is the share of the true class's examples that went to ``predicted``."""
    matrix = np.asarray(matrix)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))[:limit]  # most first; ties in class order
    support = matrix.sum(axis=1)
    return [{"true": class_names[r], "predicted": class_names[c], "count": int(off[r, c]),
             "fraction": float(off[r, c] / support[r])} for r, c in zip(rows[order], cols[order])]
