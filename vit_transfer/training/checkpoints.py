"""Checkpoint folders: atomic writes, rotation, and finding the one to resume from.

A checkpoint is written into ``checkpoints/.tmp-step_XXXXXXXX`` and renamed to ``step_XXXXXXXX``
only when every process has finished writing, so a run killed mid-save leaves a temp folder that
``latest`` ignores, never a half-written checkpoint that it would pick.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import CheckpointError, ConfigError

CHECKPOINT_DIR = "checkpoints"
STEP_DIR = re.compile(r"^step_(\d{8})$")
TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(output_dir: "str | Path") -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: "str | Path") -> int | None:
    match = STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def resolve_resume(resume: str | None, output_dir: "str | Path | None") -> Path | None:
    """``None`` -> start fresh; ``"latest"`` -> newest complete checkpoint (or fresh if none); else a folder."""
    if resume is None or resume == "":
        return None
    if resume == "latest":
        if output_dir is None:
            raise CheckpointError("train.resume_from_checkpoint=latest needs an output directory to look in")
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(
            f"train.resume_from_checkpoint: {path} is not a checkpoint folder "
            f"(use 'latest' or a folder like OUTPUT_DIR/{CHECKPOINT_DIR}/{checkpoint_name(100)})"
        )
    if path.name.startswith(TMP_PREFIX):
        raise CheckpointError(f"{path} is an unfinished checkpoint (a run died while writing it); pick a step_* folder")
    return path


def stale_checkpoints(output_dir: "str | Path", overwrite: bool) -> list[Path]:
    """Checkpoints an earlier run left where a fresh run is starting: an error unless ``overwrite``.

    Left in place they would outrank the new run's own in rotation and in ``latest``.
    """
    old = list_checkpoints(output_dir)
    if old and not overwrite:
        raise ConfigError(
            f"{output_dir} already holds checkpoints of an earlier run (newest: {old[-1].name}); continue it with "
            "train.resume_from_checkpoint=latest, start over with output.overwrite=true, or pick another output.dir"
        )
    return old


def save_checkpoint(accelerator, output_dir: "str | Path", step: int, keep: int) -> Path:
    """``accelerator.save_state`` into a temp folder, then rename it into place and rotate old ones."""
    root = Path(output_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    tmp = root / (TMP_PREFIX + checkpoint_name(step))
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(tmp)
        if final.exists():  # a rerun reached the same step: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        rotate_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return final


def rotate_checkpoints(output_dir: "str | Path", keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints; returns the deleted folders."""
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def _fsync_tree(folder: Path) -> None:
    """Flush the files to disk before the rename publishes them (a power cut must not publish zeros)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
