"""Benchmarks that run in chunks: each finished unit of work is one JSON line, appended at once and never redone.

A long benchmark on a shared machine runs over several sessions. The rows file is the only state: a restart
reads it, skips every unit it holds, and goes on; a malformed line stops everything with its file and line
number (a silently dropped row would be re-run, a silently skipped one would bias the table). ``run_chunk``
starts no new unit after ``max_minutes`` (the unit in progress finishes, so a chunk never loses work).

Used by ``pos_embed_ablation.py`` and ``bench_transfer.py`` (``import resumable``: benchmarks/ is on
``sys.path`` when a script in it runs).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent


class ResultsFileError(ValueError):
    """A results line that cannot be read: named by file and line, never skipped."""


def read_rows(path: Path, required: Sequence[str], check: "Callable[[dict], str | None] | None" = None) -> list[dict]:
    """Every row of the results file (none if it does not exist); a malformed line is an error naming it.

    ``required``: keys every row must have; ``check(row)`` returns what else is wrong with a row (None: nothing).
    """
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{where}: not JSON ({exc.msg}); fix or delete that line "
                                   "(its run is re-run once the line is gone)") from exc
        if not isinstance(row, dict):
            raise ResultsFileError(f"{where}: a {type(row).__name__}, not a JSON object with {', '.join(required)}")
        missing = [key for key in required if key not in row]
        if missing:
            raise ResultsFileError(f"{where}: missing {', '.join(missing)}")
        problem = check(row) if check is not None else None
        if problem:
            raise ResultsFileError(f"{where}: {problem}")
        rows.append(row)
    return rows


def check_fraction(row: dict, key: str) -> "str | None":
    """The message for a score that is not a fraction in [0, 1] (None when it is)."""
    value = row.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        return f"{key} {value!r} is not a fraction in [0, 1]"
    return None


def append_row(path: Path, row: dict) -> None:
    """One finished unit, on disk before the next one starts (a line of its own, flushed and fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_chunk(next_unit: Callable[[], Any], run_unit: Callable[[Any], dict], rows_path: Path, *,
              max_minutes: "float | None", clock: Callable[[], float], log: Callable[[str], None] = print,
              name: Callable[[Any], str] = str) -> list[dict]:
    """Run units until ``next_unit()`` returns None, appending each unit's row as soon as it finishes.

    ``next_unit`` is asked again after every row, so what is still to do may depend on what has just finished
    (a grid that grows). After ``max_minutes`` no new unit starts. Returns the rows this call added.
    """
    start = clock()
    added: list[dict] = []
    done: list = []
    while (unit := next_unit()) is not None:
        if max_minutes is not None and clock() - start >= 60 * max_minutes:
            log(f"--max-minutes {max_minutes:g} reached: stopping before {name(unit)}; run again to go on")
            break
        if unit in done:  # its row did not count as done (e.g. written with another protocol): it would loop forever
            raise RuntimeError(f"{name(unit)} is asked for again after its row was appended to {rows_path}: the "
                               "row does not match what the plan looks for")
        done.append(unit)
        row = run_unit(unit)
        append_row(rows_path, row)
        added.append(row)
    return added


def from_list(units: Iterable) -> Callable[[], Any]:
    """``next_unit`` for a fixed to-do list."""
    iterator = iter(units)
    return lambda: next(iterator, None)


def machine() -> str:
    """What the rows were measured on: the GPU's name, else the CPU's with the core and torch thread counts and
    whether it has bf16 units (``precision=auto`` runs fp32 without them, at about half the speed)."""
    import torch

    from vit_transfer.precision import native_bf16

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    units = "bf16 units" if native_bf16(cpu=True) else "no bf16 units"
    return f"{cpu} ({units}), {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s)"


def commit(paths: Sequence[str]) -> str:
    """The checkout's commit, ``+dirty`` when the code the rows depend on (``paths``) differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
