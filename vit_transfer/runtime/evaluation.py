"""Top-1 / top-5 accuracy and loss over a sharded evaluation loader, summed on the device, reduced once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..caller_state import eval_mode
from ..data.loader import preserved_rng
from ..metrics import topk_correct


def prepare_eval_loader(accelerator, loader):
    """Shard ``loader`` over the processes without padding, so each example is scored exactly once."""
    even = accelerator.even_batches
    accelerator.even_batches = False
    try:
        return accelerator.prepare(loader)
    finally:
        accelerator.even_batches = even


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, accelerator, desc: str = "eval") -> dict:
    """``{"top1", "top5", "loss", "num_examples", "skipped_images"}`` over every example of ``loader``.

    ``loader`` is one process's shard (``prepare_eval_loader``: no duplicated examples); counts are
    kept on the device and summed over the processes once at the end. The training loop's random
    streams are left untouched.
    """
    totals = torch.zeros(5, dtype=torch.float64, device=accelerator.device)  # top1, top5, loss, examples, skipped
    with eval_mode(model), preserved_rng(), accelerator.autocast():
        for batch in loader:
            labels = batch["labels"].to(accelerator.device)
            if "num_skipped" in batch:
                totals[4] += batch["num_skipped"].to(accelerator.device)
            if labels.shape[0] == 0:
                continue
            logits = model(batch["pixel_values"].to(accelerator.device)).float()
            totals[:2] += topk_correct(logits, labels)
            totals[2] += F.cross_entropy(logits, labels, reduction="sum").double()
            totals[3] += labels.shape[0]
    if accelerator.num_processes > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    top1, top5, loss, count, skipped = totals.tolist()
    nan = float("nan")
    return {"top1": top1 / count if count else nan, "top5": top5 / count if count else nan,
            "loss": loss / count if count else nan, "num_examples": int(count), "skipped_images": int(skipped)}
