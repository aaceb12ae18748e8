"""Training throughput and peak memory: this loop (``fit``) vs the transformers ``Trainer`` vs a plain loop.

All three train the same transformers ViT (same config and starting weights) on the same in-memory
batches, with the same optimiser (AdamW), clipping at global norm 1, batch size and precision:

- ``vit_transfer.fit``: the library loop (Accelerate, seeded resumable data order, top-k metric module);
- ``transformers.Trainer``: ``max_steps``, no evaluation, no checkpoints, ``report_to=none``;
- plain: the timm-style ``for x, y in loader: loss.backward(); clip; step`` loop under ``torch.autocast``.

Each runs in its own fresh process (so peak memory is its own), and only the steps after
``--warmup`` are timed. Images/s and peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS)
are printed as ratios to the plain loop and written to ``benchmarks/results/training.md``.

    python benchmarks/bench_training.py                                  # small ViT on the CPU
    python benchmarks/bench_training.py --hidden 768 --depth 12 --heads 12 --image-size 224 --patch 16 \
        --batch 64 --precision bf16 --steps 60                           # ViT-B/16 on a GPU
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training.md"


# --- shared set-up (runs inside each worker process) -------------------------------------------
def build_model(args):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=args.hidden, num_hidden_layers=args.depth, num_attention_heads=args.heads,
                       intermediate_size=4 * args.hidden, image_size=args.image_size, patch_size=args.patch,
                       num_labels=args.labels)
    torch.manual_seed(0)
    return ViTForImageClassification(config)


class Batches:
    """``steps * batch`` random images with labels, made once; the same for every contender."""

    def __init__(self, args):
        import torch

        g = torch.Generator().manual_seed(1)
        n = (args.steps + 1) * args.batch
        self.x = torch.randn(n, 3, args.image_size, args.image_size, generator=g)
        self.y = torch.randint(0, args.labels, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def collate(items):
    import torch

    return {"pixel_values": torch.stack([x for x, _ in items]), "labels": torch.tensor([y for _, y in items])}


def loader(args):
    from torch.utils.data import DataLoader

    return DataLoader(Batches(args), batch_size=args.batch, shuffle=True, collate_fn=collate, drop_last=True)


def device_of(args):
    import torch

    return "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def images_per_second(stamps: list[float], args) -> float:
    timed = stamps[args.warmup:]
    return (len(timed) - 1) * args.batch / (timed[-1] - timed[0])


# --- contenders ----------------------------------------------------------------------------------
def run_vit_transfer(args, stamps):
    from vit_transfer.models.hf_vit import HFViT
    from vit_transfer.training import OptimConfig, ScheduleConfig, TrainConfig, fit

    model = HFViT(build_model(args))
    sync = _sync(args)
    fit(model, loader(args),
        optim=OptimConfig(name="adamw", lr=args.lr, clip_grad_norm=1.0),
        schedule=ScheduleConfig(name="constant"),
        train=TrainConfig(max_steps=args.steps, batch_size=args.batch, precision=args.precision,
                          cpu=args.cpu, log_every=10**9),
        hooks=[lambda state: (sync(), stamps.append(time.perf_counter()))])


def run_trainer(args, stamps):
    import tempfile

    from transformers import Trainer, TrainerCallback, TrainingArguments

    sync = _sync(args)

    class Stamp(TrainerCallback):
        def on_step_end(self, *a, **k):
            sync()
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch, learning_rate=args.lr,
            lr_scheduler_type="constant", max_grad_norm=1.0, optim="adamw_torch", weight_decay=0.0,
            # use_cpu whenever this runs on the CPU: the Trainer refuses bf16 there otherwise
            bf16=args.precision == "bf16", fp16=args.precision == "fp16", use_cpu=device_of(args) == "cpu",
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
            dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, seed=0,
        )
        Trainer(model=build_model(args), args=targs, train_dataset=Batches(args), data_collator=collate,
                callbacks=[Stamp()]).train()


def run_plain(args, stamps):
    import torch
    import torch.nn.functional as F

    device = device_of(args)
    model = build_model(args).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device, enabled=args.precision == "fp16")
    sync = _sync(args)
    step = 0
    for batch in loader(args):
        x, y = batch["pixel_values"].to(device, non_blocking=True), batch["labels"].to(device, non_blocking=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(pixel_values=x).logits.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync()
        stamps.append(time.perf_counter())
        step += 1
        if step >= args.steps:
            break


def _sync(args):
    import torch

    if device_of(args) == "cuda":
        return torch.cuda.synchronize
    return lambda: None


CONTENDERS = {"vit_transfer.fit": run_vit_transfer, "transformers.Trainer": run_trainer, "plain loop": run_plain}


def worker(name: str, args, queue) -> None:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    stamps: list[float] = []
    CONTENDERS[name](args, stamps)
    device = device_of(args)
    queue.put({"name": name, "images_per_second": images_per_second(stamps, args),
               "peak_memory_mb": peak_memory_mb(device), "steps": len(stamps), "device": device})


def measure(name: str, args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(name, args, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--labels", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    p.add_argument("--repeats", type=int, default=3, help="runs per contender (round-robin); the best is kept")
    p.add_argument("--cpu", action="store_true", help="use the CPU even when a GPU is present")
    p.add_argument("--output", type=Path, default=RESULTS)
    return p


def command_line(args) -> str:
    """The command that reproduces a run, written the way ``build_parser`` reads it."""
    flags = []
    for key, value in sorted(vars(args).items()):
        flag = "--" + key.replace("_", "-")
        if key != "output" and value is not False:
            flags.append(flag if value is True else f"{flag} {value}")
    return "python benchmarks/bench_training.py " + " ".join(flags)


def main() -> None:
    p = build_parser()
    args = p.parse_args()
    if args.steps <= args.warmup + 1:
        p.error("--steps must exceed --warmup + 1")

    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    for _ in range(args.repeats):  # round-robin, so a change in machine load hits every contender alike
        for name in CONTENDERS:
            runs[name].append(measure(name, args))
    rows = []
    for name in CONTENDERS:
        best = max(runs[name], key=lambda r: r["images_per_second"])
        best["all_images_per_second"] = [round(r["images_per_second"], 1) for r in runs[name]]
        rows.append(best)
        print(f"{name:22s} {best['images_per_second']:8.1f} img/s  peak {best['peak_memory_mb']:8.1f} MiB  "
              f"(runs: {best['all_images_per_second']})", flush=True)
    write_report(rows, args)


def write_report(rows: list[dict], args) -> None:
    import torch

    base = next(r for r in rows if r["name"] == "plain loop")
    device = rows[0]["device"]
    memory = "peak CUDA memory allocated" if device == "cuda" else "peak process RSS"
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch thread(s)"
    lines = [
        "# Training loop throughput",
        "",
        f"`{command_line(args)}`",
        "",
        f"Model: transformers ViT, width {args.hidden}, depth {args.depth}, {args.heads} heads, "
        f"{args.image_size}px / patch {args.patch} ({(args.image_size // args.patch) ** 2} patches), {args.labels} labels. "
        f"Batch {args.batch}, AdamW, clip 1.0, precision `{args.precision}`, {args.steps} steps of which the "
        f"first {args.warmup} are not timed; best of {args.repeats} run(s) taken in turns, each in a fresh process.",
        f"Device: {device} ({where}); torch {torch.__version__}.",
        "",
        f"| loop | images/s | vs plain | {memory} (MiB) | vs plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['images_per_second']:.1f} | {r['images_per_second'] / base['images_per_second']:.2f}x "
                     f"| {r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / base['peak_memory_mb']:.2f}x |")
    lines += [
        "",
        "Per-run images/s: " + "; ".join(f"{r['name']} {r['all_images_per_second']}" for r in rows) + ".",
        "",
        "What the library loop does per step beyond the plain loop: it builds each batch under a seed derived",
        "from (seed, epoch, indices), so a resumed run replays the same augmentations; it goes through",
        "Accelerate's prepared model / optimizer / loader (which prefetches one batch to know the last one);",
        "it keeps the loss and the skipped-image count on the device (no host sync per step). On the CPU, peak",
        "RSS includes the libraries each contender imports (Accelerate, evaluate and datasets for the library",
        "loop; the Trainer's own stack).",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
