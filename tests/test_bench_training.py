"""benchmarks/bench_training.py prints a reproduce command that its own parser reads back unchanged."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conftest import load_benchmark
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_training")


@pytest.mark.parametrize("argv", [[], ["--cpu", "--precision", "bf16", "--image-size", "32", "--steps", "13"]])
def test_the_printed_command_parses_back_to_the_same_arguments(bench, argv):
    parser = bench.build_parser()
    args = parser.parse_args(argv)
    command = shlex.split(bench.command_line(args))
    assert command[:2] == ["python", "benchmarks/bench_training.py"]
    again = parser.parse_args(command[2:])
    assert {k: v for k, v in vars(again).items() if k != "output"} == {k: v for k, v in vars(args).items() if k != "output"}
    assert ("--cpu" in command) == args.cpu


def test_the_committed_report_command_is_the_default_run(bench):
    report = (ROOT / "benchmarks" / "results" / "training.md").read_text().splitlines()
    assert report[2] == f"`{bench.command_line(bench.build_parser().parse_args([]))}`"


def test_patch_dropout_and_memory_runs_each_keep_their_own_results(bench, tmp_path, monkeypatch):
    """The memory loop once rebound the patch-dropout list, so training.json recorded
    ``"patch_drop": {"checkpointing": true}`` and the section was never written."""
    jobs = []

    def fake_measure(job, args, timeout=3600):
        jobs.append(job)
        rate = 2.0 if job["options"].get("patch_drop") else 1.0
        return {**job, "images_per_second": rate, "first_step_seconds": 1.0, "peak_memory_mib": 100.0 / rate,
                "training_memory_mib": 50.0 + 10 * len(jobs), "device": "cpu", "precision": "bf16",
                "trainable_parameters": 7}

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "gemm_flops", lambda args: 1e11)
    monkeypatch.setattr(bench, "flops_per_image", lambda arch, size: 1e9)
    output = tmp_path / "report.md"
    bench.main(["--contenders", "", "--size-b", "0", "--patch-drop", "0.5", "--memory-runs",
                "full,lora+checkpointing", "--output", str(output)])
    report = __import__("json").loads(output.with_suffix(".json").read_text())
    assert [r["options"] for r in report["patch_drop"]] == [{"ecosystem": "timm", "patch_drop": 0.0},
                                                            {"ecosystem": "timm", "patch_drop": 0.5}]
    assert [r["name"] for r in report["memory"]] == ["full fine-tune", "LoRA r=8 + activation checkpointing"]
    assert report["memory"][1]["options"]["method"] == "lora" and report["memory"][1]["options"]["checkpointing"]
    text = output.read_text()
    assert "| vit-transfer, timm ViT, patch_drop_rate 0.5 | 2.00 | 2.00x | 50 |" in text
    assert "| LoRA r=8 + activation checkpointing | 90 | 112% |" in text  # 90 MiB against full's 80


def test_compile_seconds_is_recorded_for_a_peer_that_compiles(bench, monkeypatch):
    """The Trainer's ``torch_compile`` run reports the span vit-transfer's loop times: loop start to first step."""

    def fake_trainer(args, stamps):
        bench.LOOP_START.append(100.0)
        stamps.extend([112.5, 113.0, 113.5, 114.0])
        return {}

    monkeypatch.setitem(bench.CONTENDERS, "Trainer torch_compile", fake_trainer)
    monkeypatch.setattr(bench, "LOOP_START", [])
    import tempfile

    sent = []
    outer_tempdir, threads = tempfile.tempdir, torch.get_num_threads()
    args = bench.build_parser().parse_args(["--cpu", "--warmup", "1", "--steps", "4", "--batch", "2", "--threads", "1"])
    bench.worker({"kind": "contender", "name": "Trainer torch_compile"}, args, type("Q", (), {"put": sent.append})())
    torch.set_num_threads(threads)  # the worker sets its own (it normally runs in a process of its own)
    # and leaves the temp dir as it found it: a deleted one here hung every later DataLoader with workers
    assert tempfile.tempdir == outer_tempdir
    (row,) = sent
    assert row["compile_seconds"] == 12.5 and row["loop_first_step_seconds"] == 12.5
    assert row["images_per_second"] == 2 * 2 / 1.0  # steps 2..4 (after warm-up 1): two steps of batch 2 in 1 s
