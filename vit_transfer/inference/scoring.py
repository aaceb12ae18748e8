"""One sharded pass of a classifier over a dataset: each image's top-k classes and probabilities, in order.

Which image a row belongs to travels as the batch's ``labels``: the dataset is wrapped so that an
item's label is its position, and the loader's own skip accounting (``make_dataloader``'s
``SkipUndecodable``) drops the undecodable items. Positions that never come back are the skipped
images; the dataset's ``try_load`` says why. Every process scores its shard of batches
(``prepare_eval_loader``: no padding duplicates, uneven shards allowed) and the rows are gathered
once at the end (padded to one length, gathered, trimmed), so one process and N processes give the
same rows in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..caller_state import eval_mode
from ..data.loader import preserved_rng


@dataclass
class Skipped:
    """An image that could not be decoded: its dataset position, its name (the file) and why."""

    position: int
    name: str
    reason: str


@dataclass
class Scores:
    """The decoded images' rows, ascending by dataset position, and the undecodable ones."""

    positions: torch.Tensor  # (N,) int64 dataset positions
    top_ids: torch.Tensor  # (N, k) int64 class ids, most probable first
    top_probs: torch.Tensor  # (N, k) float32 softmax probabilities
    target_log_probs: "torch.Tensor | None" = None  # (N,) float32 log-probability of the true class
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.positions.shape[0])


class PositionLabelled(torch.utils.data.Dataset):
    """``dataset`` with each item's label replaced by its position (what the batch's ``labels`` carry)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.labels = np.arange(len(dataset), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def try_load(self, index: int):
        if hasattr(self.dataset, "try_load"):
            image, _, reason = self.dataset.try_load(index)
        else:
            (image, _), reason = self.dataset[index], None
        return image, index, reason

    def describe(self, index: int) -> str:
        return describe_item(self.dataset, index)


def describe_item(dataset, index: int) -> str:
    return dataset.describe(index) if hasattr(dataset, "describe") else f"item {index}"


def score_dataset(
    model,
    dataset,
    accelerator,
    *,
    transform=None,
    batch_size: int = 64,
    top_k: int = 5,
    targets: "Sequence[int] | np.ndarray | None" = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "predict",
) -> Scores:
    """Score every image of ``dataset`` (items ``(PIL.Image | None, label)``) with ``model``.

    ``transform`` defaults to the model's eval transform (stopping at uint8). ``targets`` (one class id of the model per
    item) adds each image's log-probability of its true class (the loss). Every process calls this
    and every process gets the whole result. The model's train/eval mode is restored afterwards.
    """
    from ..data import build_transform, make_dataloader
    from ..runtime.evaluation import prepare_eval_loader

    if transform is None:  # uint8 out of the workers; the model normalises on its device
        transform = build_transform(model.preprocessing, train=False, normalize=False)
    device = accelerator.device
    k = max(1, min(int(top_k), int(model.num_labels)))
    loader = make_dataloader(PositionLabelled(dataset), transform, batch_size, shuffle=False, num_workers=num_workers)
    loader = prepare_eval_loader(accelerator, loader)
    target_ids = torch.as_tensor(np.asarray(targets), dtype=torch.long, device=device) if targets is not None else None

    chunks: dict[str, list[torch.Tensor]] = {"positions": [], "top_ids": [], "top_probs": [], "target_log_probs": []}
    model.to(device)
    bar = tqdm(loader, desc=desc, unit="batch", disable=not (progress and accelerator.is_local_main_process),
               dynamic_ncols=True)
    with eval_mode(model), preserved_rng(), torch.inference_mode(), accelerator.autocast():
        for batch in bar:
            positions = batch["labels"].to(device)
            if positions.numel() == 0:
                continue  # every image of this batch was undecodable
            log_probs = model(batch["pixel_values"].to(device)).float().log_softmax(dim=-1)
            top = log_probs.topk(k, dim=-1)
            chunks["positions"].append(positions)
            chunks["top_ids"].append(top.indices)
            chunks["top_probs"].append(top.values.exp())
            if target_ids is not None:
                chunks["target_log_probs"].append(log_probs.gather(1, target_ids[positions][:, None])[:, 0])

    empty = {"positions": torch.zeros(0, dtype=torch.long, device=device),
             "top_ids": torch.zeros(0, k, dtype=torch.long, device=device),
             "top_probs": torch.zeros(0, k, device=device),
             "target_log_probs": torch.zeros(0, device=device)}
    if target_ids is None:
        del chunks["target_log_probs"]
    rows = {name: torch.cat(parts) if parts else empty[name] for name, parts in chunks.items()}
    rows = gather_rows(accelerator, rows)
    order = torch.argsort(rows["positions"])  # shards interleave batches; put rows back in dataset order
    rows = {name: value[order] for name, value in rows.items()}
    if torch.unique(rows["positions"]).numel() != rows["positions"].numel():
        raise RuntimeError("an image was scored twice: the evaluation loader was not sharded without padding")
    return Scores(
        positions=rows["positions"], top_ids=rows["top_ids"], top_probs=rows["top_probs"],
        target_log_probs=rows.get("target_log_probs"),
        skipped=_skipped(dataset, rows["positions"]),
    )


def gather_rows(accelerator, rows: "dict[str, torch.Tensor]") -> "dict[str, torch.Tensor]":
    """Every process's rows (uneven counts), concatenated in process order, on the CPU of every process."""
    if accelerator.num_processes == 1:
        return {name: value.cpu() for name, value in rows.items()}
    device = accelerator.device
    count = next(iter(rows.values())).shape[0]
    counts = accelerator.gather(torch.tensor([count], device=device)).tolist()
    padded = accelerator.pad_across_processes({name: value.to(device) for name, value in rows.items()}, dim=0)
    gathered = accelerator.gather(padded)
    width = max(counts)
    return {name: torch.cat([value[i * width:i * width + n] for i, n in enumerate(counts)]).cpu()
            for name, value in gathered.items()}


def _skipped(dataset, positions: torch.Tensor) -> list[Skipped]:
    """The images whose rows never came back, with the reason their decoding gives."""
    seen = np.zeros(len(dataset), dtype=bool)
    seen[positions.numpy()] = True
    out = []
    for index in np.flatnonzero(~seen).tolist():
        reason = dataset.try_load(index)[2] if hasattr(dataset, "try_load") else None
        out.append(Skipped(index, describe_item(dataset, index), reason or "no image"))
    return out
