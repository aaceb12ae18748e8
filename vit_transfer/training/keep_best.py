"""``train.keep_best``: the run returns the weights of its best validation evaluation, not its last step's.

A fine-tune can end below where it started (too hot a rate, a small folder, LP-FT's probe start); the
best evaluation is kept as a CPU copy of the tensors that training changes (trainable parameters and
buffers: the frozen rest is the same at every step), saved with each checkpoint so a resumed run keeps
it, and put back into the model at the end. Best means the highest validation top-1; equal top-1 (common
on a small validation split) goes to the lower validation loss, then to the earlier step.
``early_stopping_patience`` counts evaluations since the best.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..selection import is_better

BEST_WEIGHTS = "best.safetensors"


def changing_tensor_names(model: nn.Module) -> set[str]:
    """State-dict keys that training can change: trainable parameters and buffers."""
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    names |= {n for n, _ in model.named_buffers(remove_duplicate=False)}
    return names


@dataclass
class BestSoFar:
    """The best validation evaluation of a run so far, and the weights that scored it."""

    names: set[str] = field(default_factory=set)
    step: int | None = None
    scores: dict | None = None
    evals_since: int = 0  # evaluations since the best one (early stopping)
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def offer(self, step: int, scores: dict, module: nn.Module) -> bool:
        """Keep ``module``'s weights if ``scores`` beat the best (top-1, then loss; full ties keep the earlier step)."""
        if self.scores is not None and not is_better(scores, self.scores):
            self.evals_since += 1
            return False
        state = module.state_dict()
        self.weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items() if k in self.names}
        self.step, self.scores, self.evals_since = step, dict(scores), 0
        return True

    def restore(self, module: nn.Module) -> None:
        """Put the best weights back into ``module`` (the one they were taken from, or its twin)."""
        if self.weights is None:
            raise RuntimeError("no evaluation was kept: nothing to restore")
        missing = set(self.weights) - set(module.state_dict())
        if missing:
            raise RuntimeError(f"the kept weights do not fit the model: {sorted(missing)[:3]} are not its tensors")
        module.load_state_dict(self.weights, strict=False)

    def to_state(self) -> dict:
        """What a checkpoint's JSON keeps (the weights go to ``BEST_WEIGHTS``)."""
        return {"step": self.step, "scores": self.scores, "evals_since": self.evals_since}

    def save_weights(self, folder: Path) -> None:
        from safetensors.torch import save_file

        if self.weights is not None:
            save_file(self.weights, str(Path(folder) / BEST_WEIGHTS))

    def load(self, state: dict, folder: Path) -> None:
        """Back to what a checkpoint saved (``to_state`` + ``BEST_WEIGHTS``)."""
        from safetensors.torch import load_file

        self.step, self.scores, self.evals_since = state["step"], state["scores"], int(state["evals_since"])
        path = Path(folder) / BEST_WEIGHTS
        self.weights = load_file(str(path)) if self.step is not None else None
