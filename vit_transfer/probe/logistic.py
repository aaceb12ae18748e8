"""Multinomial logistic regression on frozen features: full-batch L-BFGS in torch, C chosen on validation.

The objective follows scikit-learn's ``C`` convention, so published sweeps (CLIP, DINOv2) mean the same
thing here: ``mean cross-entropy + ||W||^2 / (2 * C * N)`` with an unpenalised bias, on features
standardised with the training statistics. Being torch, it runs on the GPU when features are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..metrics import topk_correct


@dataclass
class LogisticRegression:
    """A fitted probe: ``logits = ((x - mean) / std) @ weight.T + bias``."""

    weight: torch.Tensor  # (K, F), on standardised features
    bias: torch.Tensor  # (K,)
    mean: torch.Tensor  # (F,)
    std: torch.Tensor  # (F,)
    C: float
    iterations: int = 0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.to(self.weight) - self.mean) / self.std
        return x @ self.weight.T + self.bias

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights and bias acting on raw features (the standardisation folded in): a plain linear head."""
        weight = self.weight / self.std
        bias = self.bias - weight @ self.mean
        return weight, bias


def standardization(features: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(eps)
    return mean, std


def fit_logistic_regression(
    features: torch.Tensor,
    labels: torch.Tensor,
    C: float,
    num_classes: int | None = None,
    *,
    max_iter: int = 1000,
    tolerance: float = 1e-5,
    init: LogisticRegression | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    device: "str | torch.device | None" = None,
) -> LogisticRegression:
    """Fit an L2-regularised multinomial logistic regression with strength ``1 / C`` (sklearn's C).

    ``init`` warm-starts from another fit (a neighbouring C in a sweep converges in a few steps);
    ``stats`` overrides the standardisation statistics (default: those of ``features``).
    """
    device = torch.device(device) if device is not None else features.device
    x = features.to(device, torch.float32)
    y = labels.to(device, torch.long)
    num_classes = int(num_classes or int(y.max()) + 1)
    mean, std = (s.to(device, torch.float32) for s in stats) if stats is not None else standardization(x)
    x = (x - mean) / std
    n, dim = x.shape
    weight = torch.zeros(num_classes, dim, device=device)
    bias = torch.zeros(num_classes, device=device)
    if init is not None:
        weight.copy_(init.weight.to(device))
        bias.copy_(init.bias.to(device))
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    penalty = 0.5 / (C * n)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance, tolerance_change=1e-10,
        history_size=20, line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    return LogisticRegression(weight.detach(), bias.detach(), mean, std, float(C), iterations)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose label is among the ``k`` best scores (the training loop's ``topk_correct``)."""
    if labels.numel() == 0:
        return float("nan")
    return float(topk_correct(logits, labels.to(logits.device), (k,))[0]) / labels.numel()


@dataclass
class CSearch:
    """The outcome of a sweep over C: the winner, its fit, and every trial ``{"C", "val_top1", "val_loss"}``.

    ``best_fit`` is the very probe that scored ``best_val_top1``: use it rather than refitting on the same
    features, since a cold refit at a large C (weak regularisation, L-BFGS stopping before the optimum of an
    almost separable problem) can land elsewhere; on digits one scored 2 points below its search fit on validation.
    """

    best_C: float
    best_val_top1: float
    trials: list[dict] = field(default_factory=list)
    best_fit: "LogisticRegression | None" = None


def c_grid(exponents: tuple[float, float] = (-6.0, 5.0), steps: int = 12) -> list[float]:
    lo, hi = exponents
    return [10.0 ** e for e in torch.linspace(lo, hi, max(steps, 1), dtype=torch.float64).tolist()]


def select_C(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int | None = None,
    *,
    grid: list[float] | None = None,
    exponents: tuple[float, float] = (-6.0, 5.0),
    steps: int = 12,
    refine_steps: int = 4,
    max_iter: int = 1000,
    device: "str | torch.device | None" = None,
    progress=None,
) -> CSearch:
    """Pick C by validation top-1 (ties: lower validation loss), coarse-then-fine.

    With an explicit ``grid`` only those values are tried. Otherwise ``steps`` values spaced evenly
    in log10 over ``exponents``, then ``refine_steps`` values within one coarse step of the best.
    Each fit warm-starts from the nearest C already fitted.
    """
    num_classes = int(num_classes or int(max(train_labels.max(), val_labels.max())) + 1)
    stats = standardization(train_features.to(device or train_features.device, torch.float32))
    fits: dict[float, LogisticRegression] = {}
    trials: list[dict] = []

    def run(values: list[float]) -> None:
        for C in sorted(values):
            if any(math.isclose(C, done, rel_tol=1e-9) for done in fits):
                continue
            nearest = min(fits, key=lambda c: abs(math.log10(c) - math.log10(C)), default=None)
            fit = fit_logistic_regression(train_features, train_labels, C, num_classes, max_iter=max_iter,
                                          init=fits.get(nearest), stats=stats, device=device)
            fits[C] = fit
            logits = fit.logits(val_features)
            trials.append({
                "C": C,
                "val_top1": topk_accuracy(logits, val_labels),
                "val_loss": float(F.cross_entropy(logits, val_labels.to(logits.device).long())),
            })
            if progress is not None:
                progress(trials[-1])

    if grid:
        run(list(grid))
    else:
        coarse = c_grid(exponents, steps)
        run(coarse)
        if refine_steps > 0 and len(coarse) > 1:
            best = _best(trials)
            step = (exponents[1] - exponents[0]) / (len(coarse) - 1)
            centre = math.log10(best["C"])
            fine = torch.linspace(centre - step, centre + step, refine_steps + 2, dtype=torch.float64)[1:-1]
            run([10.0 ** e for e in fine.tolist() if not math.isclose(e, centre, abs_tol=1e-9)])
    best = _best(trials)
    trials.sort(key=lambda t: t["C"])
    return CSearch(best["C"], best["val_top1"], trials, fits[best["C"]])


def _best(trials: list[dict]) -> dict:
    return max(trials, key=lambda t: (t["val_top1"], -t["val_loss"]))
