"""Which train-time augmentation ``auto``'s fine-tunes use, chosen on validation by a duel before the halving.

ImageNet-style random-resized crops with horizontal flips assume a natural photo: an object at any scale that may
face either way. A user's folder need not be one: on digits at 10 images per class a full fine-tune scored 66.0% on
test with crops (scale 0.35-1) and flips, 68.6% without the flips and 76.9% with plain resizing
(``benchmarks/augment_check.py``): a 3 is not a mirrored 3, and a crop of half a digit is not that digit. So auto
does not assume: its first menu method at its middle rate trains for the first rung's steps once per augmentation,
and every candidate then uses the one with the better validation score (``vit_transfer.selection``'s ranking rule).
The winning duel run is the first rung's run of that candidate (the halving does not run it again), so the duel
costs one run per extra augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..data import AugmentConfig
from ..selection import validation_key

AUGMENTS: dict[str, dict] = {
    # ImageNet fine-tuning's crops (at a milder smallest scale than timm's 0.08, for small images) and flips
    "crop-flip": {"crop": "random_resized_crop", "crop_scale": (0.35, 1.0), "hflip": True},
    # the image as it is, resized to the model: no invariance assumed
    "resize": {"crop": "resize", "hflip": False},
}
DEFAULT_AUGMENTS = ("crop-flip", "resize")  # the duel's order: equal scores go to the first


def check_augments(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, each one of ``AUGMENTS`` (a clear error otherwise)."""
    names = tuple(names)
    unknown = [n for n in names if n not in AUGMENTS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"auto augmentations must be distinct names from {list(AUGMENTS)}, got {list(names)}")
    return names


def augment_config(name: str, label_smoothing: float = 0.0) -> AugmentConfig:
    """The recipe's ``augment`` section for one of ``AUGMENTS``."""
    return AugmentConfig(**AUGMENTS[check_augments([name])[0]], label_smoothing=label_smoothing)


@dataclass
class DuelEntry:
    augment: str
    val_top1: float
    val_loss: "float | None"
    seconds: float


@dataclass
class AugmentDuel:
    """What the duel ran and chose (``entries`` empty: one augmentation offered, or no time for a duel)."""

    chosen: str
    entries: list[DuelEntry]

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "entries": [vars(e) for e in self.entries]}


def choose_augment(names: Sequence[str], score: Callable[[str], "tuple[float, float | None]"],
                   clock: Callable[[], float]) -> AugmentDuel:
    """Score each augmentation (``score(name) -> (val_top1, val_loss)``) and keep the best by the ranking rule;
    equal scores go to the one listed first. A failed run scores ``-1`` and so loses."""
    names = check_augments(names)
    entries = []
    for name in names:
        started = clock()
        top1, loss = score(name)
        entries.append(DuelEntry(name, float(top1), None if loss is None else float(loss), clock() - started))
    best = max(range(len(entries)), key=lambda i: (validation_key(entries[i].val_top1, entries[i].val_loss), -i))
    return AugmentDuel(entries[best].augment, entries)
