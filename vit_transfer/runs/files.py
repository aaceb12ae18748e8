"""Files of the run folder, each written atomically (temp file or folder, then rename)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

TMP_PREFIX = ".tmp-"

# What a run writes into its folder (run.py, the methods' exports, the loop, ``auto``). A fresh run refuses
# a folder holding an earlier run's results unless ``output.overwrite``, which clears them; files a run
# writes before its first result (``RUN_START_FILES``) are cleared without asking: a run that died
# before any result has nothing to lose. Other files in the folder are left alone.
RUN_RESULTS = ("model", "adapter", "evaluation", "checkpoints", "metrics.json", "leaderboard.md", "leaderboard.json")
RUN_START_FILES = ("recipe.yaml", "run_info.json", "logs")
RUN_OUTPUTS = RUN_RESULTS + RUN_START_FILES


def write_json(path: "str | Path", data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(TMP_PREFIX + path.name)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def replace_dir(build, final: "str | Path") -> Path:
    """Call ``build(tmp_dir)`` then move ``tmp_dir`` to ``final``, replacing any previous folder."""
    final = Path(final)
    tmp = final.with_name(TMP_PREFIX + final.name)
    old = final.with_name(TMP_PREFIX + final.name + ".old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    build(tmp)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def earlier_run_outputs(output_dir: "str | Path", names: "tuple[str, ...]" = RUN_OUTPUTS) -> list[Path]:
    """What an earlier run left in ``output_dir`` among ``names`` (empty folders do not count)."""
    out = Path(output_dir)
    found = []
    for name in names:
        path = out / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(path)
    return found


def clear_run_outputs(paths: "list[Path]") -> None:
    """Delete an earlier run's outputs; a file that cannot be deleted is an error, never skipped."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("vit_transfer", "torch", "transformers", "timm", "peft", "accelerate", "datasets"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


def command_line() -> str:
    """How this process was started, as a user would type it (``python -m vit_transfer`` for ``-m`` runs)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        program = "python -m vit_transfer"
    return " ".join([program, *sys.argv[1:]])
