"""Loader-only throughput: can the data path keep the model fed?

Times ``make_dataloader`` alone (no model) over real images, per number of worker processes, for the
ways a batch can be made, and sets the rates against the training step rate of the model measured in
the same run (``--arch`` at ``--image-size``, vit-transfer's own ``TrainingRunner`` step):

- ``float, normalised in the worker``: the host transform ends in float32 mean/std (what peers ship);
- ``uint8 (default)``: the worker stops at uint8 and the model normalises on its device;
- ``uint8 at the stored size + device resize``: ``data.host_image_size`` at the images' own size
  (28 px): the worker crops small, the device resizes the batch (timed apart, per image, on this device);
- ``PNG files, decoded per epoch`` / ``decoded once``: the same images as a folder of PNG files,
  read through ``data.decode_cache_mib`` off and on (second epoch timed: the cache is already full).

    python benchmarks/bench_loader.py            # writes benchmarks/results/loader.md (and .json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "loader.md"


def images(n: int):
    from vit_transfer.data import DataConfig, load_image_datasets

    return load_image_datasets(DataConfig(source="fashion-mnist", eval_split="none", test_split="none",
                                          val_fraction=0.0, max_train_samples=n)).train


def as_png_folder(dataset, root: Path):
    """The same images written as PNG files, one folder per class, read back as an image folder."""
    from vit_transfer.data import DataConfig, load_image_datasets

    for i in range(len(dataset)):
        image, label = dataset[i]
        folder = root / "train" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.png")
    return load_image_datasets(DataConfig(source=str(root), eval_split="none", test_split="none",
                                          val_fraction=0.0)).train


def loader_rate(dataset, transform, args, workers: int, epochs: int = 1) -> float:
    """Images/s of the last of ``epochs`` passes over ``dataset`` (earlier passes warm caches and workers)."""
    from vit_transfer.data import make_dataloader

    loader = make_dataloader(dataset, transform, args.batch, shuffle=True, seed=0, num_workers=workers, drop_last=True)
    rate = 0.0
    for _ in range(epochs):
        started, count = time.perf_counter(), 0
        for batch in loader:
            count += batch["labels"].shape[0]
        rate = count / (time.perf_counter() - started)
    return rate


def step_rate(args) -> float:
    """Training images/s of the model alone (in-memory uint8 batches, vit-transfer's loop step)."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import ViTConfig, ViTForImageClassification

    from vit_transfer.models.hf_vit import HFViT
    from vit_transfer.training import OptimConfig, TrainConfig, fit

    width, depth, heads = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}[args.arch]
    torch.manual_seed(0)
    model = HFViT(ViTForImageClassification(ViTConfig(
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * width,
        image_size=args.image_size, patch_size=16, num_labels=10)))
    steps = 5
    x = torch.randint(0, 256, (args.batch * steps, 3, args.image_size, args.image_size), dtype=torch.uint8)
    y = torch.randint(0, 10, (args.batch * steps,))
    batches = DataLoader(list(zip(x, y)), batch_size=args.batch, drop_last=True,
                         collate_fn=lambda items: {"pixel_values": torch.stack([a for a, _ in items]),
                                                   "labels": torch.stack([b for _, b in items])})
    stamps: list[float] = []
    fit(model, batches, optim=OptimConfig(name="adamw", lr=1e-4),
        train=TrainConfig(max_steps=steps, batch_size=args.batch, precision="auto", log_every=10**6),
        hooks=[lambda state: stamps.append(time.perf_counter())])
    return (len(stamps) - 2) * args.batch / (stamps[-1] - stamps[1])


def device_resize_seconds_per_image(args, stored: int) -> float:
    import torch

    from vit_transfer.layers.pixels import normalize_uint8

    x = torch.randint(0, 256, (args.batch, 3, stored, stored), dtype=torch.uint8)
    normalize_uint8(x, (0.5,) * 3, (0.5,) * 3, (args.image_size,) * 2)
    started = time.perf_counter()
    for _ in range(5):
        normalize_uint8(x, (0.5,) * 3, (0.5,) * 3, (args.image_size,) * 2)
    return (time.perf_counter() - started) / (5 * args.batch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["tiny", "small", "base"], default="small")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--images", type=int, default=1024, help="images per pass")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the main process (the model step)")
    p.add_argument("--output", type=Path, default=RESULTS)
    return p


def command_line(args) -> str:
    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in sorted(vars(args).items())
             if not (k == "output" and v == RESULTS)]
    return "python benchmarks/bench_loader.py " + " ".join(flags)


def main(argv: "list[str] | None" = None) -> None:
    import torch

    from vit_transfer.data import AugmentConfig, build_transform
    from vit_transfer.models import Preprocessing

    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",")]
    size = args.image_size
    pre = Preprocessing(image_size=(size, size), mean=(0.5,) * 3, std=(0.5,) * 3)
    augment = AugmentConfig()  # random-resized crop + flip, the training default
    data = images(args.images)
    stored = data.load_image(0).size[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = as_png_folder(data, Path(tmp))
        from vit_transfer.data.decode_cache import cache_decoded

        cached = cache_decoded(folder, 1024)
        pipelines = {
            "float, normalised in the worker": (data, build_transform(pre, True, augment), 1),
            "uint8 (default)": (data, build_transform(pre, True, augment, normalize=False), 1),
            f"uint8 at {stored} px + device resize": (data, build_transform(pre, True, augment, normalize=False,
                                                                              size=stored), 1),
            "PNG files, decoded per epoch": (folder, build_transform(pre, True, augment, normalize=False), 2),
            "PNG files, decoded once (decode cache)": (cached, build_transform(pre, True, augment, normalize=False), 2),
        }
        rates = {name: {w: loader_rate(ds, tf, args, w, epochs) for w in workers}
                 for name, (ds, tf, epochs) in pipelines.items()}
    model_rate = step_rate(args)
    resize_cost = device_resize_seconds_per_image(args, stored)
    lines = [
        "# Data loader throughput against the model's step rate",
        "",
        f"`{command_line(args)}`",
        "",
        f"{args.images} Fashion-MNIST images ({stored} px, grey), random-resized crop + flip to {size} px, batch "
        f"{args.batch}; loader only (no model), images/s of a whole pass. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; torch {torch.__version__}.",
        f"The model's training step ({args.arch}, {size} px, bf16 where native, {args.threads} threads): "
        f"**{model_rate:.1f} images/s**. Device-side uint8 -> normalised {size} px resize of a {stored} px batch: "
        f"{resize_cost * 1e3:.2f} ms per image on this CPU.",
        "",
        "| pipeline | " + " | ".join(f"{w} workers: img/s (per worker)" if w else "in-process: img/s" for w in workers)
        + " | best vs model step |",
        "|---|" + "---:|" * (len(workers) + 1),
    ]
    for name, by_workers in rates.items():
        cells = [f"{r:.0f}" + (f" ({r / w:.0f})" if w else "") for w, r in by_workers.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {max(by_workers.values()) / model_rate:.1f}x |")
    lines += ["", "A ratio above 1x: the loader outruns the training step, so the model never waits for data.", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    args.output.with_suffix(".json").write_text(json.dumps(
        {"command": command_line(args), "model_images_per_second": model_rate, "device_resize_s_per_image": resize_cost,
         "loader_images_per_second": {n: {str(w): r for w, r in v.items()} for n, v in rates.items()}}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
