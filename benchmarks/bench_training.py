"""Fine-tuning speed and memory on real images: vit-transfer against the transformers Trainer and a timm loop.

Every contender trains a ViT (ViT-S/16 by default, random init, the same config) on Fashion-MNIST
upscaled to ``--image-size`` through a real data pipeline (random-resized crop + flip of the decoded
28 px images), with AdamW at the same learning rate, batch, precision, threads, steps and warm-up,
each in its own fresh process, taken in turns:

1. ``vit-transfer``: ``vit_transfer.train`` on a recipe with the library defaults (uint8 batches
   normalised on the device, fused AdamW, cosine schedule, Accelerate, ``model.attention: auto``), with
   ``train.compile: true``, and with ``model.attention: sdpa`` (what ``auto`` did not pick on a CPU);
2. ``Trainer``: ``transformers.Trainer`` with its defaults, and with ``torch_compile=True``, reading
   float images normalised in the loader (as a ``set_transform`` pipeline gives them);
3. ``timm loop``: the loop timm's ``train.py`` runs (``timm.create_model``, ``create_optimizer_v2``,
   ``torch.autocast``, backward, step), on timm's ViT of the same shape.

Only the steps after ``--warmup`` are timed; compilation (the time to the first step) is reported apart.
The same run measures this machine's dense GEMM rate in the training precision, counts the FLOPs of one
training step with ``torch.utils.flop_counter``, and reports achieved FLOP/s as a share of it
(MFU); then the cost of ``--size-b`` px against the FLOP ratio, and the training memory of full
fine-tuning, LoRA and activation checkpointing (``--memory-runs``) at ``--memory-batch`` on ``--memory-arch``.
Results go to ``benchmarks/results/training.md`` (and ``.json``). The GPU run is ``benchmarks/gpu.sh``
(``bench_gpu.py``), which runs these contenders at 224 and 384 px.

    python benchmarks/bench_training.py                          # the CPU run (about 15 min on 2 cores)
    python benchmarks/bench_training.py --contenders "" --size-b 0 --memory-batch 0 --output PATH.md  # patch dropout
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "training.md"
ARCHS = {  # width, depth, heads: the ViT paper's sizes, patch 16 (micro: the GPU benchmark's CPU rehearsal)
    "micro": (32, 2, 2),
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
LR = 1e-4
GPU_MACHINE_LACKS = ("datasets", "evaluate")  # the bare GPU machines have neither (benchmarks/gpu.sh)
LOOP_START: list[float] = []  # when each contender's training loop began (set inside the worker process)


# --- shared set-up (inside each worker process) ------------------------------------------------
def device_of(args) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"


def precision_of(args) -> str:
    from vit_transfer.runtime.accelerator import resolve_precision

    return resolve_precision(args.precision, cpu=device_of(args) == "cpu")


def save_hf_model(folder: Path, arch: str, image_size: int) -> Path:
    """A random transformers ViT of ``arch`` with 10 labels, saved as a local checkpoint (no Hub)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    width, depth, heads = ARCHS[arch]
    config = ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                       intermediate_size=4 * width, image_size=image_size, patch_size=16, num_labels=10)
    config.architectures = ["ViTForImageClassification"]
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


def save_timm_model(folder: Path, arch: str, image_size: int) -> Path:
    """timm's ViT of the same shape, saved in timm's hub layout (``local-dir:`` loads it)."""
    import timm
    import torch
    from timm.models import save_for_hf

    width, depth, heads = ARCHS[arch]
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10, img_size=image_size,
                              embed_dim=width, depth=depth, num_heads=heads)
    save_for_hf(model, folder, safe_serialization=True)
    return folder


def data_source(args) -> str:
    """Fashion-MNIST where Debian's package is installed, else scikit-learn's digits (always offline)."""
    from vit_transfer.data.builtin import FASHION_MNIST_DIR

    if args.data == "auto":
        return "fashion-mnist" if Path(FASHION_MNIST_DIR).is_dir() else "sklearn:digits"
    return args.data


def train_images(args, n: int):
    from vit_transfer.data import DataConfig, load_image_datasets

    return load_image_datasets(DataConfig(source=data_source(args), eval_split="none", test_split="none",
                                          val_fraction=0.0, max_train_samples=n)).train


class FloatImages:
    """``{"pixel_values": float normalised (3, H, W), "labels"}`` items: what a peer's loader reads."""

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        return {"pixel_values": self.transform(image), "labels": label}


def peer_dataset(args, image_size: int):
    from vit_transfer.data import build_transform
    from vit_transfer.models import Preprocessing

    pre = Preprocessing(image_size=(image_size, image_size), mean=(0.5,) * 3, std=(0.5,) * 3)
    return FloatImages(train_images(args, args.batch * (args.steps + 2)), build_transform(pre, train=True))


def collate(items):
    import torch

    return {"pixel_values": torch.stack([i["pixel_values"] for i in items]),
            "labels": torch.tensor([i["labels"] for i in items])}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def missing_packages() -> list[str]:
    """Which of ``GPU_MACHINE_LACKS`` this interpreter cannot import: each run records it, so a report shows
    that it ran without them."""
    import importlib.util

    return [name for name in GPU_MACHINE_LACKS if importlib.util.find_spec(name) is None]


def sync_of(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


# --- contenders ----------------------------------------------------------------------------------
def run_vit_transfer(args, stamps, *, compile=False, image_size=None, arch=None, batch=None, method="full",
                     checkpointing=False, steps=None, memory=None, attention=None, ecosystem="hf", patch_drop=0.0):
    """``vit_transfer.train`` on a recipe: the library defaults unless a keyword says otherwise."""
    from vit_transfer.training import TrainingRunner, load_train_recipe, train

    image_size, arch, batch, steps = image_size or args.image_size, arch or args.arch, batch or args.batch, steps or args.steps
    work = Path(tempfile.mkdtemp(prefix="bench-vt-"))
    source = (save_hf_model if ecosystem == "hf" else save_timm_model)(work / "base", arch, image_size)
    model = {"source": str(source), "gradient_checkpointing": checkpointing, "attention": attention}
    if patch_drop:
        model["patch_drop_rate"] = patch_drop
    recipe_path = work / "recipe.yaml"
    recipe_path.write_text(json.dumps({
        "model": model,
        "data": {"source": data_source(args), "eval_split": "none", "test_split": "none", "val_fraction": 0.0,
                 "max_train_samples": batch * (steps + 2), "num_workers": args.workers},
        "method": method,
        "optim": {"name": "adamw", "lr": LR},
        "train": {"max_steps": steps, "batch_size": batch, "precision": args.precision, "cpu": args.cpu,
                  "compile": compile, "log_every": 10**6},
        "output": {"dir": str(work / "run"), "log_with": "none"},
    }))
    if memory is not None:  # training memory: what the process holds beyond the loaded model and data
        setup = TrainingRunner.setup

        def measured_setup(self):
            setup(self)
            memory["before_mib"] = rss_mib()
            if self.acc.device.type == "cuda":
                import torch

                torch.cuda.reset_peak_memory_stats()
                memory["before_mib"] = torch.cuda.memory_allocated() / 2**20

        TrainingRunner.setup = measured_setup
    loop_setup = TrainingRunner.setup

    def stamped_setup(self):  # the loop starts right after set-up (model prepared, loaders built)
        loop_setup(self)
        LOOP_START.append(time.perf_counter())

    TrainingRunner.setup = stamped_setup
    sync = sync_of(device_of(args))
    result = train(load_train_recipe(recipe_path), hooks=[lambda state: (sync(), stamps.append(time.perf_counter()))])
    return {"trainable_parameters": result.metrics["trainable_parameters"],
            "compile_seconds": result.metrics.get("compile_seconds")}


def run_trainer(args, stamps, *, compile=False):
    from transformers import Trainer, TrainerCallback, TrainingArguments, ViTForImageClassification

    work = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    source = save_hf_model(work / "base", args.arch, args.image_size)
    sync = sync_of(device_of(args))

    class Stamp(TrainerCallback):
        def on_train_begin(self, *a, **k):
            LOOP_START.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            sync()
            stamps.append(time.perf_counter())

    precision = precision_of(args)
    targs = TrainingArguments(
        output_dir=str(work / "out"), max_steps=args.steps, per_device_train_batch_size=args.batch, learning_rate=LR,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device_of(args) == "cpu",
        dataloader_num_workers=args.workers, torch_compile=compile,
        report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        remove_unused_columns=False,
    )
    model = ViTForImageClassification.from_pretrained(source)
    trainer = Trainer(model=model, args=targs, train_dataset=peer_dataset(args, args.image_size), data_collator=collate,
                      callbacks=[Stamp()])
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # Accelerate's wrapper
    return {"optimizer": type(optimizer).__name__, "fused": bool(optimizer.defaults.get("fused")),
            "foreach": optimizer.defaults.get("foreach")}


def run_timm_loop(args, stamps, *, compile=False):
    """The inner loop of timm's ``train.py`` (``train_one_epoch``): autocast forward, loss, backward, step."""
    import timm
    import torch
    from timm.optim import create_optimizer_v2
    from torch.utils.data import DataLoader

    device = device_of(args)
    width, depth, heads = ARCHS[args.arch]
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10, img_size=args.image_size,
                              embed_dim=width, depth=depth, num_heads=heads).to(device).train()
    optimizer = create_optimizer_v2(model, opt="adamw", lr=LR, weight_decay=0.05)
    if compile:
        model = torch.compile(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision_of(args))
    loader = DataLoader(peer_dataset(args, args.image_size), batch_size=args.batch, shuffle=True, drop_last=True,
                        num_workers=args.workers, collate_fn=collate, pin_memory=device == "cuda")
    sync = sync_of(device)
    LOOP_START.append(time.perf_counter())
    while len(stamps) < args.steps:  # epochs until the step count, as the other contenders do
        for batch in loader:
            x = batch["pixel_values"].to(device, non_blocking=True)
            y = batch["labels"].to(device, non_blocking=True)
            with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sync()
            stamps.append(time.perf_counter())
            if len(stamps) >= args.steps:
                break
    return {"optimizer": type(optimizer).__name__, "fused": bool(optimizer.defaults.get("fused")),
            "foreach": optimizer.defaults.get("foreach")}


MEMORY_RUNS = {  # --memory-runs: what the memory comparison trains ("vs full" is against the "full" run)
    "full": ("full fine-tune", {}),
    "lora": ("LoRA r=8", {"method": "lora"}),
    "checkpointing": ("full + activation checkpointing", {"checkpointing": True}),
    "lora+checkpointing": ("LoRA r=8 + activation checkpointing", {"method": "lora", "checkpointing": True}),
}
DEFAULT_MEMORY_RUNS = "full,lora,checkpointing"
CONTENDERS = {
    "vit-transfer": lambda a, s: run_vit_transfer(a, s),
    "vit-transfer compile": lambda a, s: run_vit_transfer(a, s, compile=True),
    "vit-transfer attention=sdpa": lambda a, s: run_vit_transfer(a, s, attention="sdpa"),
    "Trainer": lambda a, s: run_trainer(a, s),
    "Trainer torch_compile": lambda a, s: run_trainer(a, s, compile=True),
    "timm loop": lambda a, s: run_timm_loop(a, s),
}


def force_compile_backend(backend: str) -> None:
    """Make every ``torch.compile`` in this process (the library's, Accelerate's for the Trainer, the timm
    loop's) use ``backend``: the CPU rehearsal's ``aot_eager`` runs Dynamo and AOTAutograd, the plumbing,
    without minutes of C++ code generation."""
    import torch

    compile_ = torch.compile

    def compile_with_backend(*a, **k):
        k["backend"] = backend
        return compile_(*a, **k)

    torch.compile = compile_with_backend


def worker(job: dict, args, queue) -> None:
    import torch

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    torch.set_num_threads(args.threads)
    if getattr(args, "compile_backend", "inductor") != "inductor":
        force_compile_backend(args.compile_backend)
    stamps: list[float] = []
    memory: dict = {}
    started = time.perf_counter()
    outer_tempdir = tempfile.tempdir
    tempfile.tempdir = tempfile.mkdtemp(prefix="bench-run-")  # this run's checkpoints and outputs, removed after
    try:
        if job["kind"] == "contender":
            extra = CONTENDERS[job["name"]](args, stamps)
        else:
            extra = run_vit_transfer(args, stamps, memory=memory, **job["options"])
    except Exception as exc:  # reported in the results, beside the contenders that ran
        import traceback

        traceback.print_exc()
        queue.put({**job, "error": f"{type(exc).__name__}: {exc}"[:500], "images_per_second": float("nan")})
        return
    finally:  # put the process's temp dir back: multiprocessing (DataLoader workers) makes its sockets there
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
        tempfile.tempdir = outer_tempdir
    device = device_of(args)
    batch = job.get("options", {}).get("batch") or args.batch
    timed = stamps[args.warmup:] if len(stamps) > args.warmup + 1 else stamps[1:]
    rate = (len(timed) - 1) * batch / (timed[-1] - timed[0]) if len(timed) > 1 else float("nan")
    peak = peak_mib(device)
    extra = extra or {}
    loop_first_step = stamps[0] - LOOP_START[0] if LOOP_START else None
    if "compile" in job["name"] and extra.get("compile_seconds") is None:  # peers: the same span the library times
        extra["compile_seconds"] = loop_first_step
    queue.put({**job, **extra, "images_per_second": rate, "first_step_seconds": stamps[0] - started,
               "loop_first_step_seconds": loop_first_step, "step_seconds": batch / rate if rate == rate else None,
               "peak_memory_mib": peak, "training_memory_mib": peak - memory["before_mib"] if memory else None,
               "steps": len(stamps), "device": device, "precision": precision_of(args),
               "missing_packages": missing_packages()})


PRELOAD = ["torch", "transformers", "transformers.trainer", "timm", "timm.optim", "accelerate", "peft",
           "vit_transfer.training", "vit_transfer.data"]


START_METHOD = ["forkserver"]  # "spawn" once a forked worker finds CUDA already initialised


def worker_context():
    """Workers fork from a server that imported torch, transformers, timm and vit-transfer once (and never touched
    CUDA): each run still starts fresh (its own CUDA context, peak memory and compile caches in memory) but
    skips seconds of imports."""
    ctx = mp.get_context(START_METHOD[0])
    if START_METHOD[0] == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def measure(job: dict, args, timeout: float = 3600) -> dict:
    """``job`` in a fresh process; a worker that dies or outlives ``timeout`` seconds is reported, not waited on."""
    ctx = worker_context()
    queue = ctx.Queue()
    proc = ctx.Process(target=worker, args=(job, args, queue))
    proc.start()
    started = time.perf_counter()
    result = None
    while result is None:
        try:
            result = queue.get(timeout=5)
        except Exception:  # queue.Empty: still running, or dead
            waited = time.perf_counter() - started
            if not proc.is_alive():  # it may have put its result just before it ended
                try:
                    result = queue.get(timeout=2)
                    break
                except Exception:
                    pass
            if not proc.is_alive() or waited > timeout:
                why = f"worker exit code {proc.exitcode}" if not proc.is_alive() else f"no result after {waited:.0f} s"
                result = {**job, "error": why, "images_per_second": float("nan")}
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    result["wall_seconds"] = time.perf_counter() - started
    if "forked subprocess" in result.get("error", "") and START_METHOD[0] != "spawn":  # an import touched CUDA
        START_METHOD[0] = "spawn"
        return measure(job, args, timeout)
    print(f"  {job['name']:32s} {result.get('images_per_second', float('nan')):8.2f} img/s  "
          f"first step {result.get('first_step_seconds', float('nan')):6.1f} s  "
          f"peak {result.get('peak_memory_mib', float('nan')):8.0f} MiB", flush=True)
    return result


# --- the machine's own numbers -------------------------------------------------------------------
def gemm_flops(args) -> float:
    """Dense GEMM FLOP/s in the training precision (bf16 where it runs natively), same threads and device."""
    import torch

    torch.set_num_threads(args.threads)
    device = device_of(args)
    dtype = torch.bfloat16 if precision_of(args) == "bf16" else torch.float16 if precision_of(args) == "fp16" else torch.float32
    n = 8192 if device == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = sync_of(device)
    for _ in range(3):
        a @ b
    sync()
    best = 0.0
    for _ in range(5):
        reps = 20 if device == "cuda" else 3
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def flops_per_image(arch: str, image_size: int) -> float:
    """Forward + backward FLOPs of one training image, counted by ``torch.utils.flop_counter`` (matmuls,
    attention), on the HF ViT the contenders train."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ViTConfig, ViTForImageClassification

    width, depth, heads = ARCHS[arch]
    model = ViTForImageClassification(ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                                                intermediate_size=4 * width, image_size=image_size, patch_size=16,
                                                num_labels=10))
    x = torch.randn(2, 3, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=x).logits.sum().backward()
    return counter.get_total_flops() / 2


# --- driver --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=list(ARCHS), default="small")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--size-b", type=int, default=384, help="the second resolution, for the cost ratio (0: skip)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=4, help="steps left out of the timing")
    p.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"], default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads per process")
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes, every contender")
    p.add_argument("--repeats", type=int, default=1, help="runs per contender (in turns); the best is kept")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    p.add_argument("--patch-drop", type=float, default=0.5, help="patch_drop_rate to time against 0 (0: skip)")
    p.add_argument("--memory-arch", choices=list(ARCHS), default="base")
    p.add_argument("--memory-batch", type=int, default=32, help="batch of the memory comparison (0: skip)")
    p.add_argument("--memory-steps", type=int, default=3)
    p.add_argument("--memory-runs", default=DEFAULT_MEMORY_RUNS,
                   help=f"comma-separated, from {', '.join(MEMORY_RUNS)}")
    p.add_argument("--data", default="auto", help="fashion-mnist | sklearn:digits | auto (the first installed)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the device's dense datasheet peak in the training precision, for MFU (0: GEMM share only)")
    p.add_argument("--cpu", action="store_true", help="use the CPU even when a GPU is present")
    p.add_argument("--output", type=Path, default=RESULTS)
    return p


def command_line(args) -> str:
    """The command that reproduces a run, written the way ``build_parser`` reads it."""
    flags = []
    for key, value in sorted(vars(args).items()):
        flag = "--" + key.replace("_", "-")
        if (key, value) in (("output", RESULTS), ("memory_runs", DEFAULT_MEMORY_RUNS)):
            continue  # defaults that the reports' commands predate
        if value is not False:
            flags.append(flag if value is True else f"{flag} {shlex.quote(str(value))}")
    return "python benchmarks/bench_training.py " + " ".join(flags)


def main(argv: "list[str] | None" = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.steps <= args.warmup + 1:
        p.error("--steps must exceed --warmup + 1")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")

    print(f"measuring: {command_line(args)}", flush=True)
    machine = {"gemm_flops": gemm_flops(args), "flops_per_image": flops_per_image(args.arch, args.image_size)}
    print(f"dense GEMM {machine['gemm_flops'] / 1e9:.0f} GFLOP/s; {machine['flops_per_image'] / 1e9:.1f} GFLOP "
          "per trained image", flush=True)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.repeats):  # in turns, so a change in machine load hits every contender alike
        for name in names:
            runs[name].append(measure({"kind": "contender", "name": name}, args))
    rows = []
    for name in names:
        best = max(runs[name], key=lambda r: r["images_per_second"] if r["images_per_second"] == r["images_per_second"] else -1)
        best["all_images_per_second"] = [round(r["images_per_second"], 2) for r in runs[name]]
        rows.append(best)

    resolution = []
    if args.size_b:
        steps = max(args.warmup + 3, args.steps // 2)
        for size in (args.image_size, args.size_b):
            row = measure({"kind": "option", "name": f"vit-transfer {size} px",
                           "options": {"image_size": size, "steps": steps}}, args)
            row["flops_per_image"] = flops_per_image(args.arch, size)
            resolution.append(row)

    patch_drop = []
    if args.patch_drop:  # timm's token dropping: a timm ViT through vit-transfer, without and with it
        for rate in (0.0, args.patch_drop):
            patch_drop.append(measure({"kind": "option", "name": f"vit-transfer, timm ViT, patch_drop_rate {rate:g}",
                                       "options": {"ecosystem": "timm", "patch_drop": rate}}, args))
    memory = []
    if args.memory_batch:
        for key in memory_runs(args):
            name, settings = MEMORY_RUNS[key]
            memory.append(measure({"kind": "option", "name": name, "options": {
                "arch": args.memory_arch, "batch": args.memory_batch, "steps": args.memory_steps, **settings}},
                with_changes(args, warmup=0)))
    write_report(rows, resolution, patch_drop, memory, machine, args)


def memory_runs(args) -> list[str]:
    keys = [k.strip() for k in args.memory_runs.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MEMORY_RUNS]
    if unknown:
        raise SystemExit(f"--memory-runs: unknown {unknown}; known: {', '.join(MEMORY_RUNS)}")
    return keys


def compile_cell(row: dict) -> str:
    return f"{row['compile_seconds']:.1f}" if row.get("compile_seconds") is not None else "-"


def with_changes(args, **changes):
    out = argparse.Namespace(**vars(args))
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def write_report(rows, resolution, patch_drop, memory, machine, args) -> None:
    import torch

    ran = [r for r in rows + resolution + patch_drop + memory if "precision" in r]  # what the runs resolved
    device = ran[0]["device"] if ran else device_of(args)
    where = (torch.cuda.get_device_name(0) if device == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads")
    width, depth, heads = ARCHS[args.arch]
    gemm, per_image = machine["gemm_flops"], machine["flops_per_image"]
    by_name = {r["name"]: r for r in rows}
    trainer = by_name.get("Trainer", {}).get("images_per_second")
    lines = [
        "# Fine-tuning speed and memory against the peers",
        "",
        f"`{command_line(args)}`",
        "",
        f"ViT ({args.arch}: width {width}, depth {depth}, {heads} heads, patch 16) at {args.image_size} px, random init, "
        f"10 labels; `{data_source(args)}` images decoded and random-resized-cropped to {args.image_size} px in the loader "
        f"({args.workers} worker processes); AdamW lr {LR:g}; batch {args.batch}; precision `{ran[0]['precision'] if ran else args.precision}`; "
        f"{args.steps} steps, the first {args.warmup} untimed; each contender in a fresh process, best of {args.repeats}.",
        f"Device: {device} ({where}); torch {torch.__version__}, Python {sys.version.split()[0]}.",
        f"Dense GEMM measured in this run: **{gemm / 1e9:,.0f} GFLOP/s**; one trained image costs "
        f"{per_image / 1e9:.1f} GFLOP (forward + backward, `torch.utils.flop_counter`).",
    ]
    peak = args.peak_tflops * 1e12
    if peak:
        lines.append(f"MFU is against the datasheet's dense peak of {args.peak_tflops:g} TFLOP/s "
                     f"(the measured GEMM rate is {gemm / peak:.0%} of it).")
    lines += [
        "",
        "| contender | images/s | vs Trainer | share of GEMM rate | " + ("MFU | " if peak else "")
        + "first step (s) | compile (s) | peak memory (MiB) | optimizer |",
        "|---|---:|---:|---:|" + ("---:|" if peak else "") + "---:|---:|---:|---|",
    ] if rows else []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | failed: {r['error']} | | | | | | |")
            continue
        ratio = f"{r['images_per_second'] / trainer:.2f}x" if trainer else "-"
        opt = r.get("optimizer", "AdamW (fused)" if r["name"].startswith("vit-transfer") else "")
        if r.get("fused"):
            opt += " fused"
        elif r.get("foreach") is not None:
            opt += " foreach" if r.get("foreach") else " single-tensor"
        mfu = f"{r['images_per_second'] * per_image / peak:.0%} | " if peak else ""
        lines.append(f"| {r['name']} | {r['images_per_second']:.2f} | {ratio} | "
                     f"{r['images_per_second'] * per_image / gemm:.0%} | {mfu}{r['first_step_seconds']:.1f} | "
                     f"{compile_cell(r)} | {r['peak_memory_mib']:,.0f} | {opt} |")
    if rows:
        lines += ["", "Per-run images/s: " + "; ".join(f"{r['name']} {r.get('all_images_per_second')}" for r in rows) + ".",
                  "Compile: the training loop's start to the end of its first step, for the compile variants. "
                  "First step: the run's process start (forked from a server that did the imports once) to the end "
                  "of the first optimiser step (model build, data, and for the compile variants the compilation)."]
    if len(resolution) == 2:
        a, b = resolution
        cost = a["images_per_second"] / b["images_per_second"]
        flop = b["flops_per_image"] / a["flops_per_image"]
        lines += ["", f"## {args.image_size} px vs {args.size_b} px (vit-transfer defaults)", "",
                  "| size | tokens | images/s | GFLOP / image | share of GEMM rate |", "|---:|---:|---:|---:|---:|"]
        for size, r in zip((args.image_size, args.size_b), resolution):
            lines.append(f"| {size} | {(size // 16) ** 2 + 1} | {r['images_per_second']:.2f} | "
                         f"{r['flops_per_image'] / 1e9:.1f} | {r['images_per_second'] * r['flops_per_image'] / gemm:.0%} |")
        lines += ["", f"Time per image grows **{cost:.2f}x** for a FLOP ratio of **{flop:.2f}x**."]
    if len(patch_drop) == 2 and not any("error" in r for r in patch_drop):
        a, b = patch_drop
        lines += ["", "## Patch dropout (timm ViT through vit-transfer)", "",
                  "| run | images/s | vs without | peak memory (MiB) |", "|---|---:|---:|---:|"]
        for r in patch_drop:
            lines.append(f"| {r['name']} | {r['images_per_second']:.2f} | "
                         f"{r['images_per_second'] / a['images_per_second']:.2f}x | {r['peak_memory_mib']:,.0f} |")
    if memory:
        full = next((r for r in memory if r["name"] == MEMORY_RUNS["full"][0]), {})
        base = full.get("training_memory_mib")
        kind = "CUDA memory allocated beyond the loaded model" if device == "cuda" else "peak RSS beyond the process after set-up"
        lines += ["", f"## Training memory, {args.memory_arch} at batch {args.memory_batch} ({kind})", "",
                  "| run | training memory (MiB) | vs full | images/s | trainable parameters |", "|---|---:|---:|---:|---:|"]
        for r in memory:
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error']} | | | |")
                continue
            lines.append(f"| {r['name']} | {r['training_memory_mib']:,.0f} | {format(r['training_memory_mib'] / base, '.0%') if base else '-'} | "
                         f"{r['images_per_second']:.2f} | {r.get('trainable_parameters', 0):,} |")
    lines.append("")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    args.output.with_suffix(".json").write_text(json.dumps(
        {"command": command_line(args), "machine": machine, "contenders": rows, "resolution": resolution,
         "patch_drop": patch_drop, "memory": memory}, indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
