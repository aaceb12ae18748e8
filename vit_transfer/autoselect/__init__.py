"""``vit-transfer auto``: the best transfer for a folder of images, chosen on validation, never below the probe.

The package is ``autoselect`` so that ``vit_transfer.auto`` stays the function.

    from vit_transfer import auto

    result = auto("my_images/", budget_seconds=600, output_dir="runs/auto")
    print(result.chosen, result.val_top1)    # "probe" or e.g. "lora lr=0.00548 (resize)"; leaderboard.md there
"""

from .budget import Budget, parse_duration
from .halving import Candidate, HalvingResult, successive_halving
from .probe_sweep import ProbeSweep, sweep_probes
from .run import AutoResult, AutoSettings, BudgetError, auto

__all__ = [
    "AutoResult",
    "AutoSettings",
    "Budget",
    "BudgetError",
    "Candidate",
    "HalvingResult",
    "ProbeSweep",
    "auto",
    "parse_duration",
    "successive_halving",
    "sweep_probes",
]

