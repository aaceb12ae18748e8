"""Top-1 / top-5 accuracy and loss over a (sharded) evaluation loader, gathered across processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data_order import preserved_rng
from .metrics import load_topk_accuracy

PAD_LABEL = -1


def _pad_rows(tensor: torch.Tensor, rows: int, value) -> torch.Tensor:
    """Pad dim 0 to ``rows`` so every process gathers a full batch; padding rows are dropped later."""
    missing = rows - tensor.shape[0]
    if missing <= 0:
        return tensor
    pad = torch.full((missing, *tensor.shape[1:]), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, pad])


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, accelerator, num_labels: int, metric=None, desc: str = "eval") -> dict:
    """``{"top1", "top5", "loss", "num_examples", "skipped_images"}`` over every example of ``loader``.

    Predictions go through ``accelerator.gather_for_metrics`` (which drops the duplicates that
    even batches add on the last step). Images dropped as undecodable leave short batches; those are
    padded with label -1 to the loader's batch size so positions line up for the gather, then removed.
    The training loop's random streams are left untouched.
    """
    metric = metric or load_topk_accuracy()
    k = min(5, num_labels)
    rows = max(1, loader.total_batch_size // accelerator.num_processes) if hasattr(loader, "total_batch_size") else None
    loss_sum = torch.zeros((), dtype=torch.float64)
    count = 0
    skipped = torch.zeros((), dtype=torch.long, device=accelerator.device)
    was_training = model.training
    model.eval()
    with preserved_rng():
        for batch in loader:
            labels = batch["labels"]
            skipped += batch.get("num_skipped", torch.zeros((), dtype=torch.long)).to(skipped.device)
            if labels.shape[0] > 0:
                logits = model(batch["pixel_values"]).float()
                losses = F.cross_entropy(logits, labels, reduction="none")
                ranked = logits.topk(k, dim=-1).indices
            else:
                losses = torch.zeros(0, device=labels.device)
                ranked = torch.zeros(0, k, dtype=torch.long, device=labels.device)
            target = rows or labels.shape[0]
            if rows is not None:
                labels, losses, ranked = (_pad_rows(labels, target, PAD_LABEL), _pad_rows(losses, target, 0.0),
                                          _pad_rows(ranked, target, 0))
            ranked, labels, losses = accelerator.gather_for_metrics((ranked, labels, losses))
            keep = labels != PAD_LABEL
            ranked, labels, losses = ranked[keep], labels[keep], losses[keep]
            if labels.numel():
                metric.add_batch(predictions=ranked.cpu().tolist(), references=labels.cpu().tolist())
                loss_sum += losses.double().sum().cpu()
                count += labels.numel()
    model.train(was_training)
    if accelerator.num_processes > 1:
        skipped = accelerator.reduce(skipped, reduction="sum")
    total_skipped = int(skipped)
    if count == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "num_examples": 0,
                "skipped_images": total_skipped}
    scores = metric.compute(k=(1, 5))
    return {"top1": scores["top1"], "top5": scores["top5"], "loss": float(loss_sum / count), "num_examples": count,
            "skipped_images": total_skipped}
