"""Successive halving (Jamieson & Talwalkar 2016; Hyperband's inner loop), pure: no training in here.

Every candidate gets a short run; the better half (by validation top-1, equal top-1 by the lower validation
loss: small validation splits tie often) gets a run ``eta`` times longer, and so on until one is left or the
longest run is reached. The scorer does the work (``score(candidate, resource) -> val_top1`` or
``(val_top1, val_loss)``), so the rule is testable with a fake one.

Budget: before each run the cost is estimated from what was measured (seconds per unit of resource, the
candidate's own if it ran before, else the slowest seen) and the search stops when the budget's
``remaining()`` cannot pay for it. The ranking is then the last complete rung's; a first rung cut short
ranks the candidates it scored.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Protocol, Sequence

from ..selection import validation_key


@dataclass(frozen=True)
class Candidate:
    """A method (a key of the candidate menu) at one learning rate, trained with one augmentation
    (a key of ``autoselect.augment.AUGMENTS``)."""

    method: str
    lr: float
    augment: str = "crop-flip"

    @property
    def label(self) -> str:
        return f"{self.method} lr={self.lr:g} ({self.augment})"


@dataclass
class Trial:
    """One scored run: ``resource`` is the run's length (optimiser steps for ``auto``)."""

    candidate: Candidate
    rung: int
    resource: int
    val_top1: float
    seconds: float
    val_loss: "float | None" = None  # breaks ties of val_top1 when the scorer gives it

    def to_dict(self) -> dict:
        return {**asdict(self.candidate), "rung": self.rung, "resource": self.resource, "val_top1": self.val_top1,
                "val_loss": self.val_loss, "seconds": self.seconds}


class RemainingTime(Protocol):
    def remaining(self) -> float: ...


@dataclass
class HalvingResult:
    ranking: list[Candidate]  # best first: the last complete rung's candidates
    trials: list[Trial] = field(default_factory=list)
    rungs_completed: int = 0
    stopped_by_budget: bool = False

    @property
    def winner(self) -> "Candidate | None":
        return self.ranking[0] if self.ranking else None

    def last_trial(self, candidate: Candidate) -> "Trial | None":
        """The candidate's longest run."""
        own = [t for t in self.trials if t.candidate == candidate]
        return max(own, key=lambda t: t.rung) if own else None


def rank(scored: "Sequence[Trial]", order: dict[Candidate, int]) -> list[Candidate]:
    """Best validation top-1 first; equal top-1 goes to the lower validation loss (a missing loss counts as the
    worst), then to the candidate listed first (deterministic)."""
    def key(t: Trial):
        return (validation_key(t.val_top1, t.val_loss), -order[t.candidate])
    return [t.candidate for t in sorted(scored, key=key, reverse=True)]


def successive_halving(
    candidates: Sequence[Candidate],
    score: Callable[[Candidate, int], float],
    *,
    min_resource: int,
    max_resource: "int | None" = None,
    eta: int = 2,
    budget: "RemainingTime | None" = None,
    estimate: "Callable[[Candidate, int], float] | None" = None,
    clock: Callable[[], float] = time.perf_counter,
    prescored: "Sequence[Trial]" = (),
) -> HalvingResult:
    """Halve ``candidates`` rung by rung (run lengths ``min_resource * eta**rung``, capped at ``max_resource``).

    Each rung keeps ``max(1, n // eta)`` candidates. Stops when one would be left (its full-length run is the
    caller's), when the run length cannot grow any more, or when ``budget`` cannot pay for the next run.
    ``estimate(candidate, resource)`` prices a run before any has been measured (default: free). ``score`` returns
    the validation top-1, or ``(top-1, loss)`` to break ties by the loss. ``prescored``: runs made before the
    search (auto's augmentation duel); a candidate's run at a length found there is taken as it is, not run again.
    """
    if not candidates:
        raise ValueError("successive halving needs at least one candidate")
    if len(set(candidates)) != len(candidates):
        raise ValueError("candidates must be distinct")
    if min_resource < 1 or eta < 2:
        raise ValueError(f"min_resource must be >= 1 and eta >= 2, got {min_resource} and {eta}")
    order = {c: i for i, c in enumerate(candidates)}
    known = {(t.candidate, t.resource): t for t in prescored}
    result = HalvingResult(ranking=[])
    survivors = list(candidates)
    resource, rung = min_resource, 0
    while True:
        scored: list[Trial] = []
        for candidate in survivors:
            if (candidate, resource) in known:
                trial = replace(known[(candidate, resource)], rung=rung)
                result.trials.append(trial)
                scored.append(trial)
                continue
            if budget is not None and _estimate(result.trials, candidate, resource, estimate) > budget.remaining():
                result.stopped_by_budget = True
                if rung == 0:
                    result.ranking = rank(scored, order)
                return result
            started = clock()
            value = score(candidate, resource)
            top1, loss = (value[0], value[1]) if isinstance(value, tuple) else (value, None)
            trial = Trial(candidate, rung, resource, float(top1), clock() - started,
                          None if loss is None else float(loss))
            result.trials.append(trial)
            scored.append(trial)
        result.ranking = rank(scored, order)
        result.rungs_completed = rung + 1
        next_resource = resource * eta if max_resource is None else min(resource * eta, max_resource)
        survivors = result.ranking[: max(1, len(survivors) // eta)]
        if len(survivors) == 1 or next_resource == resource:  # the winner's full run is the caller's
            return result
        resource, rung = next_resource, rung + 1


def _estimate(trials: list[Trial], candidate: Candidate, resource: int, prior=None) -> float:
    """Seconds the next run should take: its own last rate, else the slowest rate seen; before any run, ``prior``."""
    own = [t for t in trials if t.candidate == candidate]
    pool = own[-1:] or trials
    if not pool:
        return prior(candidate, resource) if prior is not None else 0.0
    return max(t.seconds / t.resource for t in pool) * resource if all(t.resource for t in pool) else math.inf
