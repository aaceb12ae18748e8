"""Few-shot linear evaluation as in the ViT paper (big_vision ``fewshot_lsr``): closed-form ridge regression.

For k shots: draw k training examples per class, standardise each feature dimension with the
statistics of that small set, append a constant bias feature (large, so the bias is almost
unregularised), regress onto ``2 * onehot - 1`` targets with L2 strength ``l2`` and classify the
evaluation split by argmax. The normal equations are solved in the smaller of the N x N and D x D
forms. Repeated over seeded draws; mean and standard deviation reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DEFAULT_SHOTS = (1, 5, 10, 25)
BIAS_FEATURE = 100.0


@dataclass
class FewShotScore:
    shots: int
    mean: float
    std: float  # over draws (population std, ddof=0)
    runs: list[float] = field(default_factory=list)


@dataclass
class FewShotResult:
    scores: list[FewShotScore]
    notes: list[str] = field(default_factory=list)

    def by_shots(self) -> dict[int, FewShotScore]:
        return {s.shots: s for s in self.scores}


def ridge_accuracy(
    x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, num_classes: int,
    l2: float = 2.0 ** 10, bias: float = BIAS_FEATURE,
) -> float:
    """Top-1 of the closed-form ridge classifier fitted on ``(x, y)``, evaluated on ``(x_test, y_test)``."""
    x = x.double()
    x_test = x_test.to(x)
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, unbiased=False, keepdim=True) + 1e-5
    x = torch.nn.functional.pad((x - mean) / std, (0, 1), value=bias)
    x_test = torch.nn.functional.pad((x_test - mean) / std, (0, 1), value=bias)
    targets = 2.0 * torch.nn.functional.one_hot(y.long().to(x.device), num_classes).to(x) - 1.0
    n, d = x.shape
    if n >= d:
        w = torch.linalg.solve(x.T @ x + l2 * torch.eye(d, dtype=x.dtype, device=x.device), x.T @ targets)
    else:
        w = x.T @ torch.linalg.solve(x @ x.T + l2 * torch.eye(n, dtype=x.dtype, device=x.device), targets)
    predictions = (x_test @ w).argmax(dim=1)
    return float((predictions == y_test.to(predictions.device)).double().mean())


def fewshot_lsr(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    shots: "tuple[int, ...] | list[int]" = DEFAULT_SHOTS,
    *,
    num_draws: int = 3,
    seed: int = 0,
    l2: float = 2.0 ** 10,
    num_classes: int | None = None,
    device: "str | torch.device | None" = None,
) -> FewShotResult:
    """k-shot accuracy for each k in ``shots``, averaged over ``num_draws`` seeded draws.

    A k larger than the smallest class in the training features is skipped with a note.
    """
    device = torch.device(device) if device is not None else train_features.device
    train_labels = train_labels.long().cpu()
    num_classes = int(num_classes or int(max(train_labels.max(), test_labels.max())) + 1)
    counts = torch.bincount(train_labels, minlength=num_classes)
    by_class = [torch.nonzero(train_labels == c).flatten() for c in range(num_classes)]
    smallest = int(counts.min())
    x_all = train_features.to(device)
    x_test = test_features.to(device)
    scores: list[FewShotScore] = []
    notes: list[str] = []
    for k in shots:
        if k < 1 or k > smallest:
            rarest = int(counts.argmin())
            notes.append(f"{k}-shot skipped: class {rarest} has only {smallest} training example(s)")
            continue
        runs = []
        for draw in range(num_draws):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + k * 1_009 + draw)
            chosen = torch.cat([idx[torch.randperm(len(idx), generator=generator)[:k]] for idx in by_class])
            runs.append(ridge_accuracy(x_all[chosen.to(device)], train_labels[chosen], x_test, test_labels,
                                       num_classes, l2=l2))
        values = torch.tensor(runs, dtype=torch.float64)
        scores.append(FewShotScore(k, float(values.mean()), float(values.std(unbiased=False)), runs))
    return FewShotResult(scores, notes)
