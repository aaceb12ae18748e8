"""Metric modules shipped with the package, loaded by path with ``evaluate.load`` (no Hub needed)."""

from __future__ import annotations

from pathlib import Path

TOPK_ACCURACY_PATH = Path(__file__).resolve().parent / "topk_accuracy"


def load_topk_accuracy():
    """The local top-k accuracy metric (``evaluate.load("accuracy")`` would need the Hub)."""
    import evaluate

    return evaluate.load(str(TOPK_ACCURACY_PATH), keep_in_memory=True)
