"""Time to a linear-probe result vs. training a linear head on the frozen backbone the usual way.

Both start from the same frozen backbone and the same data and report top-1 on the same test split:

- probe: ``probe_model`` (features extracted once, L-BFGS logistic regression with C chosen on the
  eval split, refit on train + eval), plus a second run that reads the feature cache;
- loop: a linear head trained for ``--epochs`` epochs with AdamW (batch 64, cosine schedule, best of a few lr),
  re-running the backbone on every batch of every epoch, as a training loop over a frozen model does.

    python benchmarks/bench_probe.py        # small ViT pretrained here on Fashion-MNIST, probed on sklearn digits
    python benchmarks/bench_probe.py --model google/vit-base-patch16-224-in21k --image-size 224

Writes ``benchmarks/results/probe.md``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from vit_transfer import load_vit
from vit_transfer.data import DataConfig, build_transform, load_image_datasets, make_dataloader
from vit_transfer.probe import FeatureCache, ProbeConfig, probe_model

RESULTS = Path(__file__).resolve().parent / "results" / "probe.md"


def pretrained_backbone(folder: Path, steps: int, seed: int = 0) -> Path:
    """A small timm ViT (4 blocks, width 96, 32 px, patch 4) pretrained briefly on Fashion-MNIST.

    No checkpoint can be downloaded here, and a random ViT's class token barely varies between images,
    so a short supervised pretraining on another dataset gives features with the usual scale and
    some transferable structure: an offline stand-in for a real checkpoint.
    """
    from vit_transfer.testing import save_tiny_timm_vit

    save_tiny_timm_vit(folder, image_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, num_classes=10,
                       seed=seed)
    if steps <= 0:
        return folder
    model = load_vit(folder)
    data = load_image_datasets(DataConfig(source="fashion-mnist", eval_split="none", test_split="none",
                                          max_train_samples=steps * 64, num_workers=0))
    loader = make_dataloader(data.train, build_transform(model.preprocessing, train=False), 64, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()
    for step, batch in enumerate(loader):
        if step == steps:
            break
        loss = torch.nn.functional.cross_entropy(model(batch["pixel_values"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.set_head(10)  # the Fashion-MNIST head is not part of the backbone being evaluated
    model.save(folder)
    return folder


def train_linear_head(model, datasets, epochs: int, batch_size: int, pooling: str, device,
                      lr: float) -> tuple[float, float]:
    """The standard loop: frozen backbone in every step, only the head learns. Returns (top-1, seconds)."""
    start = time.perf_counter()
    model.set_head(datasets.num_labels, datasets.id2label, pooling=pooling, init="zeros")
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.head_parameters()
    for p in head:
        p.requires_grad_(True)
    transform = build_transform(model.preprocessing, train=False)
    train = make_dataloader(datasets.train, transform, batch_size, shuffle=True, seed=0)
    optimizer = torch.optim.AdamW(head, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train))
    for _ in range(epochs):
        for batch in train:
            logits = model(batch["pixel_values"].to(device))
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    correct = total = 0
    with torch.inference_mode():
        for batch in make_dataloader(datasets.test, transform, 256, shuffle=False):
            predictions = model(batch["pixel_values"].to(device)).argmax(1).cpu()
            correct += int((predictions == batch["labels"]).sum())
            total += len(predictions)
    return correct / total, time.perf_counter() - start


def compare(source: str, datasets, image_size: int | None, args, device, cache: FeatureCache) -> dict:
    """One probe run, one cached probe run, and the loop at each learning rate, at one input size."""

    def fresh():
        torch.manual_seed(0)
        return load_vit(source, image_size=image_size)

    config = ProbeConfig(pooling=args.pooling, fewshot=False)
    t = time.perf_counter()
    probe = probe_model(fresh(), datasets, config, cache=cache)
    probe_seconds = time.perf_counter() - t
    t = time.perf_counter()
    cached = probe_model(fresh(), datasets, config, cache=cache)
    cached_seconds = time.perf_counter() - t
    assert cached.cache_hits == 3, cached.cache
    loops = {}
    for lr in [float(v) for v in args.loop_lrs.split(",")]:
        loops[lr] = train_linear_head(fresh(), datasets, args.epochs, 64, args.pooling, device, lr)
        print(f"{probe.image_size}: loop lr={lr:g}: top-1 {100 * loops[lr][0]:.2f}% in {loops[lr][1]:.1f} s")
    best_lr = max(loops, key=lambda lr: loops[lr][0])
    return dict(probe=probe, probe_seconds=probe_seconds, cached=cached, cached_seconds=cached_seconds,
                loops=loops, best_lr=best_lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a checkpoint (default: a small ViT pretrained here on Fashion-MNIST)")
    parser.add_argument("--pretrain-steps", type=int, default=400, help="Fashion-MNIST steps for the default model")
    parser.add_argument("--loop-lrs", default="1e-3,1e-2,1e-1", help="AdamW learning rates tried for the loop")
    parser.add_argument("--image-sizes", default="32,64", help="input sizes to compare at (position embeddings resized)")
    parser.add_argument("--data", default="sklearn:digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pooling", default="cls")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the CI box has 2, shared)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    if args.model:
        source = args.model
    else:
        t = time.perf_counter()
        source = str(pretrained_backbone(work / "backbone", args.pretrain_steps))
        print(f"pretrained the stand-in backbone on Fashion-MNIST in {time.perf_counter() - t:.0f} s: {source}")
    datasets = load_image_datasets(DataConfig(source=args.data, num_workers=0))
    print(datasets.summary())
    cache = FeatureCache(work / "cache")
    sizes = [int(v) if v.strip().lower() != "native" else None for v in args.image_sizes.split(",")]
    runs = [compare(source, datasets, size, args, device, cache) for size in sizes]

    model_name = args.model or (f"a small timm ViT (4 blocks, width 96, patch 4, made at 32 px) pretrained for "
                                f"{args.pretrain_steps} steps on Fashion-MNIST")
    lines = [
        "# Linear probe vs. a trained linear head on a frozen backbone",
        "",
        f"`python benchmarks/bench_probe.py{' --model ' + args.model if args.model else ''}` — "
        f"{model_name}; {datasets.summary()}; top-1 on the test split; "
        f"{device.type}, {args.threads} torch thread(s) on a shared {platform.machine()} box, "
        f"torch {torch.__version__}.",
        "",
        "| input | method | test top-1 | seconds | speed-up vs. loop |",
        "|---|---|---:|---:|---:|",
    ]
    for run in runs:
        probe, loops, best_lr = run["probe"], run["loops"], run["best_lr"]
        loop_top1, loop_seconds = loops[best_lr]
        size = "x".join(map(str, probe.image_size))
        for name, top1, seconds in (
            ("linear probe: extract once + L-BFGS, C swept", probe.linear.top1, run["probe_seconds"]),
            ("linear probe, features from the cache", run["cached"].linear.top1, run["cached_seconds"]),
            (f"linear head, {args.epochs} epochs re-running the backbone (AdamW, lr {best_lr:g})",
             loop_top1, loop_seconds),
        ):
            lines.append(f"| {size} | {name} | {100 * top1:.2f}% | {seconds:.1f} | {loop_seconds / seconds:.1f}x |")
    n = {k: len(getattr(datasets, k)) for k in ("train", "eval", "test")}
    ceiling_loop, ceiling_probe = args.epochs * n["train"] + n["test"], sum(n.values())
    lines += ["", "Details:"]
    for run in runs:
        probe = run["probe"]
        lines.append(
            f"- {'x'.join(map(str, probe.image_size))}: C = {probe.linear.C:.3g} chosen on the eval split "
            f"({len(probe.linear.sweep)} values); probe time = features {probe.seconds['features']:.1f} s + "
            f"fitting {probe.seconds.get('linear', 0):.1f} s; loop learning rates (top-1 on test, seconds): "
            + ", ".join(f"{lr:g}: {100 * a:.2f}% {sec:.1f} s" for lr, (a, sec) in run["loops"].items())
        )
    lines += [
        "",
        "Seconds include extracting (or reading) the train, eval and test features and scoring the test split;",
        "the loop's include its test pass. Both use the eval transform (no augmentation). The loop's learning",
        "rate is the best *on the test split*, a choice that favours the loop; its time is that of one run.",
        "The probe's fitting time is fixed (16 L-BFGS fits + a refit) while the loop's grows with the backbone's",
        "cost, so the speed-up grows with model size and resolution. It is bounded by the images each side",
        f"pushes through the backbone: here {ceiling_loop:,} for the loop against {ceiling_probe:,} for the probe, a",
        f"ceiling of {ceiling_loop / ceiling_probe:.1f}x, low because digits' test split is as large as its train split",
        "(CIFAR-100 with a 10% eval split: (10 x 45,000 + 10,000) / 60,000 = 7.7x).",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
