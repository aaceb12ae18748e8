"""ViT-B/16 fine-tuning on one GPU, bf16, at 224 and 384 px: vit-transfer against the Trainer and a timm loop.

Every contender of ``bench_training.py`` that the issue names runs at both sizes, each in a fresh process:
vit-transfer with its defaults and with ``train.compile``, the transformers ``Trainer`` with its defaults and
with ``torch_compile=True``, and timm's ``train.py`` loop. Reported per run: images/s (steps after
``--warmup``), MFU against the device's dense bf16 datasheet peak (looked up by the name the device reports,
``DEVICE_PEAKS``) beside the dense matmul rate measured in the same run, peak memory, the first step
(the run's process start to its first optimiser step) and, for the compile variants, ``compile_seconds`` (loop start
to the end of the first step, the span vit-transfer's loop times). Then the data loader alone with the
machine's cores, against the fastest step rate at each size. A time budget skips what would not finish.

    bash benchmarks/gpu.sh                # on the GPU: benchmarks/results/gpu.md (and .json), <= 8 min on one H100
    bash benchmarks/gpu.sh --rehearse     # the same code on the CPU with a micro ViT, about 2 minutes:
                                          # benchmarks/results/gpu_rehearsal.md (and .json)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_training as bt  # the contenders and the worker (run as a script, benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "gpu.md"
REHEARSAL_RESULTS = HERE / "results" / "gpu_rehearsal.md"
CONTENDERS = ("vit-transfer compile", "Trainer", "vit-transfer", "Trainer torch_compile", "timm loop")  # run order
TARGETS = {"mfu_224": 0.40, "vs_trainer": 1.3}  # vit-transfer compile at 224 px: the targets

# Dense bf16 tensor-core peaks in TFLOP/s (no sparsity), first substring match of torch.cuda.get_device_name()
# wins, so the specific names come before the general ones. Sources: NVIDIA's datasheets, which print the
# figure with 2:4 sparsity (halved here): H100 SXM5 1,979 / PCIe 1,513 / NVL 1,671 ("NVIDIA H100 Tensor Core
# GPU" datasheet); H200 SXM 1,979 / NVL 1,671 ("NVIDIA H200 Tensor Core GPU"); GH200 1,979 ("NVIDIA GH200
# Grace Hopper Superchip"); A100 624 (SXM and PCIe alike, "NVIDIA A100 Tensor Core GPU"); L40S 733 ("NVIDIA
# L40S"); L4 242 ("NVIDIA L4 Tensor Core GPU"). "NVIDIA H100 80GB HBM3" is how an SXM H100 names itself.
DEVICE_PEAKS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("H200 NVL", 835.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def peak_tflops(device_name: str) -> "float | None":
    """The dense bf16 datasheet peak for ``device_name`` (None when the table does not know the device)."""
    for pattern, tflops in DEVICE_PEAKS:
        if pattern.lower() in device_name.lower():
            return tflops
    return None


def machine_cores() -> int:
    """CPU cores this process may use (a container's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_idx(path: Path, array) -> None:
    """``array`` (uint8 or int64 labels as uint8) in the idx format (``vit_transfer.data.idx`` reads it)."""
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def make_training_images(args, n: int, folder: Path) -> Path:
    """``n`` 28 px grey images as an idx folder, the installed images (Fashion-MNIST, else digits upscaled)
    repeated: one epoch covers every timed step, so no contender pays a loader restart mid-run."""
    import numpy as np
    from PIL import Image

    base = bt.train_images(argparse.Namespace(data="auto"), n)
    pictures = [np.asarray(base[i][0].convert("L").resize((28, 28), Image.BILINEAR)) for i in range(len(base))]
    labels = [base[i][1] for i in range(len(base))]
    order = np.arange(n) % len(pictures)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", np.stack(pictures)[order])
    write_idx(folder / "train-labels-idx1-ubyte", np.asarray(labels)[order])
    return folder


def loader_rates(args, size: int, batch: int) -> dict:
    """Images/s of the data loader alone (no model) with ``args.loader_workers`` processes: vit-transfer's uint8
    batches (the model normalises on its device) and the float batches the Trainer and timm loop read."""
    from vit_transfer.data import build_transform, make_dataloader
    from vit_transfer.models import Preprocessing

    images = bt.train_images(args, batch * args.loader_batches)
    workers = args.loader_workers
    pre = Preprocessing(image_size=(size, size), mean=(0.5,) * 3, std=(0.5,) * 3)
    rates = {}
    for name, normalize in (("uint8 (vit-transfer)", False), ("float, normalised in the worker (peers)", True)):
        loader = make_dataloader(images, build_transform(pre, True, normalize=normalize), batch, shuffle=True,
                                 seed=0, num_workers=workers, drop_last=True)
        iterator, count = iter(loader), 0
        next(iterator)  # workers started and warm
        started = time.perf_counter()
        for item in iterator:
            count += item["labels"].shape[0]
        rates[name] = count / (time.perf_counter() - started)
        del iterator, loader
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rehearse", action="store_true",
                   help="the CPU rehearsal: micro ViT, 32 and 48 px, few steps, compile with aot_eager")
    p.add_argument("--arch", choices=list(bt.ARCHS), default="base")
    p.add_argument("--sizes", default="224,384", help="image sizes, comma-separated")
    p.add_argument("--batches", default="128,64", help="the batch at each size")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=20, help="steps left out of the timing (compiled graphs settle)")
    p.add_argument("--precision", choices=["bf16", "fp16", "no"], default="bf16")
    p.add_argument("--workers", type=int, default=None, help="data-loader processes (default: the cores less 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: the cores)")
    p.add_argument("--loader-workers", type=int, default=None, help="for the loader alone (default: --workers)")
    p.add_argument("--loader-batches", type=int, default=30, help="batches the loader-alone timing reads")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--budget-seconds", type=float, default=420,
                   help="no run starts or goes on after this many seconds (gpu.sh has 8 minutes in all)")
    p.add_argument("--run-timeout", type=float, default=240, help="a run still going after this is stopped")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--output", type=Path, default=None)
    return p


def resolve(args) -> argparse.Namespace:
    """The rehearsal's settings, and the defaults that depend on the machine."""
    if args.rehearse:
        args.cpu, args.arch, args.sizes, args.batches = True, "micro", "32,48", "8,8"
        args.steps, args.warmup, args.loader_batches, args.compile_backend = 6, 2, 8, "aot_eager"
        args.output = args.output or REHEARSAL_RESULTS
        # in-process loading for the runs: a loader worker's start costs seconds of this budget; the
        # loader-alone timing still goes through a worker process
        args.workers = 0 if args.workers is None else args.workers
        args.loader_workers = 1 if args.loader_workers is None else args.loader_workers
    cores = machine_cores()
    args.output = args.output or RESULTS
    args.workers = max(1, cores - 2) if args.workers is None else args.workers
    args.threads = args.threads or cores
    args.loader_workers = args.workers if args.loader_workers is None else args.loader_workers
    args.size_list = [int(s) for s in args.sizes.split(",")]
    args.batch_list = [int(b) for b in args.batches.split(",")]
    if len(args.batch_list) != len(args.size_list):
        raise SystemExit(f"--batches {args.batches} needs one batch per size in --sizes {args.sizes}")
    if args.steps <= args.warmup + 1:
        raise SystemExit("--steps must exceed --warmup + 1")
    args.data = "auto"
    return args


def main(argv: "list[str] | None" = None) -> None:
    import torch

    args = resolve(build_parser().parse_args(argv))
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in bt.CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; known: {', '.join(bt.CONTENDERS)}")
    began = time.perf_counter()
    device = bt.device_of(args)
    device_name = (torch.cuda.get_device_name(0) if device == "cuda"
                   else f"{platform.processor() or platform.machine()} CPU")
    peak = peak_tflops(device_name) if device == "cuda" else None
    cores = machine_cores()
    print(f"{device_name}: dense bf16 peak {peak} TFLOP/s; {cores} cores, {args.workers} loader workers per run",
          flush=True)
    data_folder = Path(tempfile.mkdtemp(prefix="bench-gpu-data-"))
    args.data = str(make_training_images(args, max(args.batch_list) * (args.steps + 2), data_folder))
    gemm = bt.gemm_flops(args)
    if device == "cuda":
        torch.cuda.empty_cache()
    print(f"dense matmul: {gemm / 1e12:.1f} TFLOP/s measured", flush=True)

    sizes = []
    for size, batch in zip(args.size_list, args.batch_list):
        run_args = bt.with_changes(args, image_size=size, batch=batch)
        per_image = bt.flops_per_image(args.arch, size)
        rows = []
        for name in names:
            left = args.budget_seconds - (time.perf_counter() - began)
            if left < 30 + 60 * ("compile" in name and not args.cpu):  # would not reach its timed steps
                rows.append({"name": name, "skipped": f"time budget ({left:.0f} s left)",
                             "images_per_second": float("nan")})
                print(f"  {name}: skipped, {left:.0f} s of the budget left", flush=True)
                continue
            row = bt.measure({"kind": "contender", "name": name}, run_args, timeout=min(args.run_timeout, left))
            row["tflops"] = row["images_per_second"] * per_image / 1e12
            row["share_of_matmul_rate"] = row["images_per_second"] * per_image / gemm
            row["mfu"] = row["images_per_second"] * per_image / (peak * 1e12) if peak else None
            rows.append(row)
        sizes.append({"image_size": size, "batch": batch, "flops_per_image": per_image, "contenders": rows})

    for entry in sizes:  # the loader alone, after the contenders (it needs no GPU time, only the cores)
        entry["loader_images_per_second"] = loader_rates(args, entry["image_size"], entry["batch"])
        entry["fastest_step_images_per_second"] = max(
            (r["images_per_second"] for r in entry["contenders"] if r["images_per_second"] == r["images_per_second"]),
            default=float("nan"))
    report = {"command": "bash benchmarks/gpu.sh" + (" --rehearse" if args.rehearse else ""),
              "argv": sys.argv[1:], "rehearsal": args.rehearse, "device": device, "device_name": device_name,
              "peak_tflops": peak, "matmul_tflops": gemm / 1e12, "cores": cores, "workers": args.workers,
              "loader_workers": args.loader_workers, "missing_packages": bt.missing_packages(),
              "threads": args.threads, "arch": args.arch, "precision": args.precision, "steps": args.steps,
              "warmup": args.warmup, "compile_backend": args.compile_backend, "torch": torch.__version__,
              "python": sys.version.split()[0], "seconds": time.perf_counter() - began, "sizes": sizes}
    shutil.rmtree(data_folder, ignore_errors=True)
    write_report(report, args.output)


def fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def write_report(report: dict, output: Path) -> None:
    width, depth, heads = bt.ARCHS[report["arch"]]
    peak = report["peak_tflops"]
    lines = [
        "# GPU fine-tuning speed: vit-transfer against the Trainer and a timm loop" if not report["rehearsal"] else
        "# Rehearsal of the GPU benchmark on the CPU (plumbing only: micro ViT, numbers mean nothing)",
        "",
        f"`{report['command']}` ({report['seconds']:.0f} s). Device: **{report['device_name']}**; torch {report['torch']}, "
        f"Python {report['python']}; {report['cores']} cores, {report['workers']} loader workers per run; "
        + (f"run without {' and '.join(report['missing_packages'])} (not importable)." if report["missing_packages"]
           else f"{' and '.join(bt.GPU_MACHINE_LACKS)} were importable."),
        f"ViT ({report['arch']}: width {width}, depth {depth}, {heads} heads, patch 16), random init, 10 labels, "
        f"precision `{report['precision']}`, AdamW lr {bt.LR:g}; {report['steps']} steps per run, the first "
        f"{report['warmup']} untimed; every run in a fresh process; compile backend `{report['compile_backend']}`.",
        f"Dense matmul measured in this run: **{report['matmul_tflops']:.1f} TFLOP/s**"
        + (f"; the datasheet's dense bf16 peak for this device is {peak:g} TFLOP/s (MFU is against it; the measured "
           f"rate is {report['matmul_tflops'] / peak:.0%} of it)." if peak else
           "; no datasheet peak for this device in `DEVICE_PEAKS`, so MFU is left out (the share of the measured "
           "matmul rate is given)."),
    ]
    for entry in report["sizes"]:
        rows = entry["contenders"]
        trainer = next((r["images_per_second"] for r in rows if r["name"] == "Trainer"), None)
        lines += ["", f"## {entry['image_size']} px, batch {entry['batch']} "
                      f"({entry['flops_per_image'] / 1e9:.3g} GFLOP per trained image)", "",
                  "| contender | images/s | vs Trainer | TFLOP/s | share of matmul rate | MFU | peak memory (MiB) "
                  "| first step (s) | compile (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if "skipped" in r or "error" in r:
                lines.append(f"| {r['name']} | {'skipped: ' + r['skipped'] if 'skipped' in r else 'failed: ' + r['error']}"
                             " | | | | | | | |")
                continue
            ratio = r["images_per_second"] / trainer if trainer and trainer == trainer else None
            lines.append(f"| {r['name']} | {r['images_per_second']:.1f} | {fmt(ratio, '.2f') + 'x' if ratio else '-'} | {r['tflops']:.3g} | "
                         f"{r['share_of_matmul_rate']:.0%} | {fmt(r['mfu'], '.0%')} | {r['peak_memory_mib']:,.0f} | "
                         f"{r['first_step_seconds']:.1f} | {fmt(r.get('compile_seconds'), '.1f')} |")
        loader = entry["loader_images_per_second"]
        fastest = entry["fastest_step_images_per_second"]
        lines += ["", f"Loader alone, {report['loader_workers']} workers: "
                  + "; ".join(f"{k} **{v:,.0f} images/s** ({fmt(v / fastest, '.1f')}x the fastest step)"
                              for k, v in loader.items()) + "."]
    lines += ["", "First step: the run's process start (forked from a server that did the imports once) to the end of its "
              "first optimiser step (model build and save, data, compilation). "
              "Compile: loop start to the end of the first step (what `train.compile` adds is this less an eager "
              "run's first step). Peak memory: `torch.cuda.max_memory_allocated` (CPU: peak RSS)."]
    if not report["rehearsal"]:
        lines += [f"Targets (issue 26): vit-transfer compile at 224 px >= {TARGETS['mfu_224']:.0%} MFU and >= "
                  f"{TARGETS['vs_trainer']}x the Trainer's defaults."]
    lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines))
    output.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
