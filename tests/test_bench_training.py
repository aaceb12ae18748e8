"""benchmarks/bench_training.py prints a reproduce command that its own parser reads back unchanged."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_training", ROOT / "benchmarks" / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
