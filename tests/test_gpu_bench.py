"""The GPU benchmark's machine has no ``datasets``/``evaluate``: vit-transfer and the benchmark must not need them.

Every check runs in a fresh interpreter started with ``benchmarks/without_packages`` first on ``PYTHONPATH``
(its ``sitecustomize`` hides the packages named in ``$HIDE_PACKAGES``), from outside the checkout, the way
``benchmarks/gpu.sh`` runs on that machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import json
import math
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HIDER = ROOT / "benchmarks" / "without_packages"
MISSING_ON_GPU_MACHINE = "datasets,evaluate"


def run_without_packages(code: str, cwd: Path, hidden: str = MISSING_ON_GPU_MACHINE, timeout: int = 600):
    env = {**os.environ, "PYTHONPATH": f"{HIDER}{os.pathsep}{ROOT}", "HIDE_PACKAGES": hidden,
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_hidden_packages_look_uninstalled(tmp_path):
    done = run_without_packages("""
        import importlib.util
        for name in ("datasets", "evaluate"):
            assert importlib.util.find_spec(name) is None, name
            try:
                __import__(name)
            except ModuleNotFoundError:
                pass
            else:
                raise AssertionError(f"{name} imported")
        from transformers.utils import is_datasets_available
        assert not is_datasets_available()
        print("hidden")
    """, tmp_path)
    assert done.returncode == 0 and "hidden" in done.stdout, done.stderr


def test_vit_transfer_and_the_benchmark_import_and_hub_data_fails_clearly_without_datasets(tmp_path):
    done = run_without_packages(f"""
        import importlib, importlib.util, pkgutil, sys
        import vit_transfer
        assert vit_transfer.__file__.startswith({str(ROOT)!r}), vit_transfer.__file__
        for name in vit_transfer.__all__:
            getattr(vit_transfer, name)
        modules = [m.name for m in pkgutil.walk_packages(vit_transfer.__path__, "vit_transfer.")
                   if not m.name.endswith("__main__")]
        for name in modules:
            importlib.import_module(name)
        # what the benchmark's contenders import
        from transformers import Trainer, TrainerCallback, TrainingArguments, ViTForImageClassification
        import timm, timm.optim, timm.models, peft, accelerate
        sys.path.insert(0, {str(ROOT / "benchmarks")!r})
        for bench in ("bench_training", "bench_gpu"):
            spec = importlib.util.spec_from_file_location(bench, {str(ROOT / "benchmarks")!r} + f"/{{bench}}.py")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        assert sys.modules["datasets"] is None and sys.modules["evaluate"] is None
        print(len(modules), "modules")
        # a Hub dataset id without `datasets` installed: an error that says what to install (one interpreter serves
        # both checks: each start imports torch, timm and transformers)
        from vit_transfer.data import DataConfig, load_image_datasets
        from vit_transfer.errors import DataError
        try:
            load_image_datasets(DataConfig(source="someone/some-dataset"))
        except DataError as exc:
            print("hub data:", exc)
        else:
            raise AssertionError("a Hub dataset id loaded without datasets")
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    counted, hub_data = done.stdout.split("hub data:")
    assert int(counted.split()[-2]) > 50  # the walk found the package, not an empty path
    assert "pip install datasets" in hub_data


@pytest.mark.slow
def test_the_cpu_rehearsal_measures_every_contender_at_both_sizes_without_datasets_and_evaluate(tmp_path):
    """``bash benchmarks/gpu.sh --rehearse``, end to end: what the GPU run does, on the CPU, with a micro ViT."""
    output = tmp_path / "rehearsal.md"
    env = {**os.environ, "PYTHONPATH": ""}  # gpu.sh itself must put the checkout (and the hider) on the path
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--rehearse", "--output", str(output)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["rehearsal"] and report["device"] == "cpu"
    assert report["missing_packages"] == ["datasets", "evaluate"]
    assert report["matmul_tflops"] > 0 and math.isfinite(report["matmul_tflops"])
    assert [entry["image_size"] for entry in report["sizes"]] == [32, 48]
    expected = {"vit-transfer", "vit-transfer compile", "Trainer", "Trainer torch_compile", "timm loop"}
    for entry in report["sizes"]:
        assert entry["flops_per_image"] > 0
        rows = {row["name"]: row for row in entry["contenders"]}
        assert set(rows) == expected, entry["contenders"]
        for name, row in rows.items():
            assert "error" not in row and "skipped" not in row, row
            assert row["missing_packages"] == ["datasets", "evaluate"], name  # the worker ran without them
            assert row["steps"] == report["steps"], name
            for key in ("images_per_second", "first_step_seconds", "loop_first_step_seconds", "peak_memory_mib",
                        "share_of_matmul_rate", "tflops"):
                assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
            assert row["first_step_seconds"] >= row["loop_first_step_seconds"], name
            if "compile" in name:
                assert math.isfinite(row["compile_seconds"]) and row["compile_seconds"] > 0, name
        assert all(math.isfinite(rate) and rate > 0 for rate in entry["loader_images_per_second"].values())
    text = output.read_text()
    assert "Rehearsal" in text and "| Trainer torch_compile |" in text


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA GH200 480GB", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
    ("Tesla T4", None),
])
def test_the_mfu_peak_is_looked_up_by_the_name_the_device_reports(name, tflops):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert bench_gpu.peak_tflops(name) == tflops
