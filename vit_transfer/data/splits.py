"""Seeded, stratified index selection: carving a validation split and capping split sizes."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, carved)`` sorted indices; about ``fraction`` of each class goes to ``carved``.

    Every class with at least two items keeps one on each side, so a small validation split
    still sees every class. The same labels, fraction and seed always give the same split.
    """
    rng = np.random.default_rng(seed)
    carved = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < 2 or fraction <= 0:
            continue
        k = min(max(1, int(round(len(members) * fraction))), len(members) - 1)
        carved.append(members[:k])
    carved_idx = np.sort(np.concatenate(carved)) if carved else np.zeros(0, dtype=np.int64)
    keep_idx = np.setdiff1d(np.arange(len(labels)), carved_idx)
    return keep_idx.astype(np.int64), carved_idx.astype(np.int64)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` sorted indices with class proportions kept (largest remainder), chosen at random by ``seed``."""
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / len(labels))
    take = np.floor(exact).astype(np.int64)
    leftover = n - int(take.sum())
    order = np.lexsort((classes, -(exact - take)))  # largest remainder first, ties by class
    take[order[:leftover]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
