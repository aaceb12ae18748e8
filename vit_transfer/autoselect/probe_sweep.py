"""The probe sweep: pooling x last-N blocks x C on features extracted once, chosen on the validation split.

One forward pass per split collects the class token and the patch mean of the last ``max_blocks`` blocks
(``extract_features(pooling="cls+mean", last_n=max_blocks)``); every (pooling, blocks) configuration is a
slice of that tensor, laid out exactly as ``forward_features(pooling, last_n)`` lays it out, so the
chosen probe served as the model's head (``HeadSpec.last_n``) gives the probe's logits. C is chosen per
configuration on the validation split with the probe's own ``select_C``, whose fits are on train only; the
winning configuration's search fit is the returned probe (the validation split stays out of every fit, clean for
comparing it with fine-tunes), so its validation top-1 is the one it was chosen on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import DataError
from ..probe.config import ProbeConfig
from ..probe.features import Features, extract_features
from ..probe.logistic import LogisticRegression, select_C, topk_accuracy
from ..selection import validation_key

POOLING_CHOICES = ("cls", "mean", "cls+mean")
POOLING_WIDTH = {"cls": 1, "mean": 1, "cls+mean": 2}  # tokens per block: the sweep runs the widest first
# DINOv2's linear evaluation reads 1 or 4 blocks; 8 joined when the pick sat on 4, the grid's edge, in all six digits
# runs of benchmarks/results/transfer.md (the shipped model has 6 blocks: its grid is 1, 2, 4, 6)
BLOCK_CHOICES = (1, 2, 4, 8)


@dataclass
class BlockFeatures:
    """Class token and patch mean of the last ``blocks`` blocks: ``tokens`` is ``(N, blocks, 2, D)``, oldest first."""

    tokens: torch.Tensor
    labels: torch.Tensor
    num_skipped: int = 0
    positions: "torch.Tensor | None" = None  # (N,) dataset position of each row (None: 0..N-1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def blocks(self) -> int:
        return int(self.tokens.shape[1])

    def select(self, pooling: str, last_n: int) -> torch.Tensor:
        """``(N, F)`` features as ``model.forward_features(pooling=pooling, last_n=last_n)`` returns them."""
        if not 1 <= last_n <= self.blocks:
            raise ValueError(f"last_n={last_n} outside the {self.blocks} extracted block(s)")
        parts = {"cls": slice(0, 1), "mean": slice(1, 2), "cls+mean": slice(0, 2)}[pooling]
        chosen = self.tokens[:, self.blocks - last_n:, parts]  # (N, last_n, 1|2, D)
        return chosen.reshape(len(self), -1)


def model_depth(model) -> int:
    """Number of transformer blocks (the blocks VPT hooks: one list for both ecosystems)."""
    return model.depth


def block_choices(depth: int, choices: tuple[int, ...] = BLOCK_CHOICES) -> list[int]:
    """``choices`` capped by the model's depth (a 2-block model gets [1, 2])."""
    return sorted({min(n, depth) for n in choices})


def extract_block_features(model, dataset, blocks: int, **options) -> BlockFeatures:
    """One pass over ``dataset``: both poolings of the last ``blocks`` blocks (``extract_features`` options pass on)."""
    found: Features = extract_features(model, dataset, pooling="cls+mean", last_n=blocks, **options)
    tokens = found.features.reshape(len(found), blocks, 2, model.embed_dim)
    return BlockFeatures(tokens, found.labels, found.num_skipped, found.indices)


@dataclass
class ProbeTrial:
    """One configuration of the sweep, scored on the validation split at its best C."""

    pooling: str
    last_n: int
    C: float
    val_top1: float
    val_loss: float
    feature_dim: int
    seconds: float
    c_trials: list[dict] = field(default_factory=list)

    @property
    def stock_head(self) -> bool:
        """A class-token head on the last block: what the stock loaders' classifiers compute."""
        return self.pooling == "cls" and self.last_n == 1

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "c_trials"}


@dataclass
class ProbeSweep:
    """The sweep's winner (its search fit, on train only), its validation top-1, and every configuration tried."""

    best: ProbeTrial
    probe: LogisticRegression
    val_top1: float  # the probe on the validation split (= best.val_top1): the returned model's, when the probe wins
    trials: list[ProbeTrial]
    seconds: dict

    def to_dict(self) -> dict:
        return {"best": self.best.summary(), "val_top1": self.val_top1, "seconds": self.seconds,
                "trials": [t.summary() for t in self.trials]}


def sweep_probes(
    train: BlockFeatures,
    val: BlockFeatures,
    num_labels: int,
    *,
    poolings: tuple[str, ...] = POOLING_CHOICES,
    blocks: "list[int] | None" = None,
    config: ProbeConfig | None = None,
    device=None,
    stop: "Callable[[], bool] | None" = None,
) -> ProbeSweep:
    """Every pooling x blocks configuration, C chosen on ``val`` by ``select_C``; the best one's fit on ``train``.

    Configurations run richest first (the most blocks, both poolings), the one that won on every digits seed and
    DINOv2's linear-evaluation default, so a sweep that ``stop`` (a budget's verdict, asked before each configuration
    after the first) ends early has tried the likeliest winners. Ties (validation top-1, then loss) go to the
    simplest configuration (fewest blocks, then ``poolings`` order), whatever the order they ran in.
    """
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"the probe sweep needs training and validation images (got {len(train)} and {len(val)})")
    config = config or ProbeConfig()
    blocks = blocks or block_choices(train.blocks)
    trials: list[ProbeTrial] = []
    fits: list[LogisticRegression] = []  # trial by trial: its search fit at its C, on train only
    simplest_first = [(pooling, last_n) for last_n in sorted(blocks) for pooling in poolings]
    richest_first = sorted(reversed(simplest_first), key=lambda c: (-c[1], -POOLING_WIDTH[c[0]]))
    for pooling, last_n in richest_first:
        if trials and stop is not None and stop():
            break
        started = time.perf_counter()
        x_train, x_val = train.select(pooling, last_n), val.select(pooling, last_n)
        search = select_C(x_train, train.labels, x_val, val.labels, num_labels, grid=config.c_grid,
                          exponents=tuple(config.c_exponents), steps=config.c_steps,
                          refine_steps=config.c_refine_steps, max_iter=config.max_iter, device=device)
        best_c = next(t for t in search.trials if t["C"] == search.best_C)
        trials.append(ProbeTrial(pooling, last_n, search.best_C, search.best_val_top1, best_c["val_loss"],
                                 int(x_train.shape[1]), time.perf_counter() - started, search.trials))
        fits.append(search.best_fit)

    def rank(i: int) -> tuple:
        return validation_key(trials[i].val_top1, trials[i].val_loss), -simplest_first.index(
            (trials[i].pooling, trials[i].last_n))

    pick = max(range(len(trials)), key=rank)
    best, probe = trials[pick], fits[pick]
    val_top1 = probe_val_top1(probe, val, best)
    seconds = {"fits": sum(t.seconds for t in trials)}
    return ProbeSweep(best, probe, val_top1, trials, seconds)


def probe_val_top1(probe: LogisticRegression, val: BlockFeatures, trial: ProbeTrial) -> float:
    return topk_accuracy(probe.logits(val.select(trial.pooling, trial.last_n)), val.labels)


def probe_correct(sweep: ProbeSweep, val: BlockFeatures) -> dict[int, bool]:
    """``{dataset position: the sweep's probe classifies it correctly}`` on ``val`` (for the paired comparison)."""
    predicted = sweep.probe.logits(val.select(sweep.best.pooling, sweep.best.last_n)).argmax(dim=-1).cpu()
    positions = val.positions if val.positions is not None else torch.arange(len(val))
    return {int(p): bool(c) for p, c in zip(positions, predicted == val.labels.cpu())}


def probe_loss(probe: LogisticRegression, features: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.cross_entropy(probe.logits(features), labels.to(probe.weight.device).long()))


def attach_probe(model, sweep: ProbeSweep, id2label: "dict[int, str] | None" = None) -> None:
    """Make ``sweep``'s probe ``model``'s classifier: logits = probe logits on the same pixels.

    A ``(cls, 1 block)`` probe is a plain linear head the stock loaders express (``ViTForImageClassification``,
    timm ``create_model``); any other is a head on ``forward_features(pooling, last_n)`` that ``load_vit``
    rebuilds from the saved ``vit_transfer_head`` config (the stock loaders see a classifier of another width).
    """
    from ..probe.head import load_linear_head

    weight, bias = sweep.probe.folded()
    best = sweep.best
    model.set_head(int(weight.shape[0]), id2label, kind="linear", pooling=best.pooling, init="zeros",
                   last_n=best.last_n)
    target = model.head_parameters()[0]
    load_linear_head(model, weight.to(target), bias.to(target))
    model.eval()


def stock_loader_note(model) -> "str | None":
    """What the card says when ``model``'s head is not one the stock loaders express (None when it is).

    Stock loaders (transformers' ``AutoModelForImageClassification``, timm's ``create_model``) build their own
    classifier on their own pooling of the last block; ``load_vit`` rebuilds the saved ``vit_transfer_head``.
    """
    spec = model.head_spec
    if model._native_head():
        return None
    what = f"the {spec.pooling} features of the last {spec.last_n} block(s) ({model.feature_dim(spec.pooling, spec.last_n)} values)"
    native_pooling = model.family.native_pooling if model.ecosystem == "hf" else "cls"  # timm: token or avg, width D
    if model.feature_dim(spec.pooling, spec.last_n) != model.feature_dim(native_pooling, 1):
        given = ("refuse the saved classifier (its width differs) unless told to ignore it "
                 "(transformers: ignore_mismatched_sizes=True), and then give the backbone with a new, untrained head")
    else:
        given = "load the classifier but apply it to their own pooling, so their predictions differ from this model's"
    return (f"This model's classifier reads {what}. The stock loaders {given}. "
            "vit_transfer.load_vit (and vit-transfer predict / evaluate) reload the exact model.")
