"""Checkpoint folders: atomic writes, a manifest that proves them whole, rotation, and resume lookup.

A checkpoint is written into ``checkpoints/.tmp-step_XXXXXXXX``: Accelerate's ``save_state`` (model,
optimiser, RNG streams), then the loop's own state as JSON and the EMA weights as safetensors, then
``manifest.json`` (every file's size and sha256) last, and only then renamed to ``step_XXXXXXXX``.
A run killed mid-save leaves a temp folder that ``latest`` ignores; a file damaged later (a full
disk, a truncated copy) fails the manifest, and ``latest`` falls back to the newest intact one.

Rotation is ours, not ``ProjectConfiguration(total_limit=...)``: Accelerate's only works with its
automatic ``checkpoint_N`` naming, deletes the oldest *before* writing and writes in place, so a
crash mid-save could leave one checkpoint fewer and a half-written newest one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..models.builtin import sha256_file

CHECKPOINT_DIR = "checkpoints"
STEP_DIR = re.compile(r"^step_(\d{8})$")
TMP_PREFIX = ".tmp-"
MANIFEST = "manifest.json"
LOOP_STATE = "loop_state.json"
EMA_WEIGHTS = "ema.safetensors"
LOOP_COUNTERS = ("step", "epoch", "batch_in_epoch", "images_seen", "train_skipped")  # TrainState's fields


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(output_dir: "str | Path") -> list[Path]:
    """Published (renamed) checkpoints under ``output_dir/checkpoints``, oldest first."""
    root = Path(output_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: "str | Path") -> int | None:
    match = STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def write_manifest(folder: Path) -> None:
    """Record every file's size and sha256; written last, it marks the checkpoint complete."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Raise ``CheckpointError`` naming the first file that is missing, resized or altered."""
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{manifest} is missing or unreadable ({exc}): the checkpoint is incomplete") from exc
    for name, expect in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        if path.stat().st_size != expect["bytes"] or sha256_file(path) != expect["sha256"]:
            raise CheckpointError(f"checkpoint file {path} is damaged: its size or sha256 differs from {MANIFEST}")


def resolve_resume(resume: str | None, output_dir: "str | Path | None") -> Path | None:
    """``None`` -> start fresh; ``"latest"`` -> the newest intact checkpoint (or fresh if none); else a folder.

    ``latest`` skips, with a warning naming it, a checkpoint that fails its manifest; an explicit
    folder that fails it is an error.
    """
    if resume is None or resume == "":
        return None
    if resume == "latest":
        if output_dir is None:
            raise CheckpointError("train.resume_from_checkpoint=latest needs an output directory to look in")
        found, failures = list_checkpoints(output_dir), []
        for path in reversed(found):
            try:
                verify_checkpoint(path)
                return path
            except CheckpointError as exc:
                warnings.warn(f"skipping checkpoint {path.name}: {exc}", stacklevel=2)
                failures.append(f"{path.name}: {exc}")
        if found:  # never fall back to a fresh run (or, with output.overwrite, delete them) silently
            raise CheckpointError("train.resume_from_checkpoint=latest: no intact checkpoint in "
                                  f"{Path(output_dir) / CHECKPOINT_DIR}; " + "; ".join(failures))
        return None
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(
            f"train.resume_from_checkpoint: {path} is not a checkpoint folder "
            f"(use 'latest' or a folder like OUTPUT_DIR/{CHECKPOINT_DIR}/{checkpoint_name(100)})"
        )
    if path.name.startswith(TMP_PREFIX):
        raise CheckpointError(f"{path} is an unfinished checkpoint (a run died while writing it); pick a step_* folder")
    verify_checkpoint(path)
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


def save_checkpoint(accelerator, output_dir: "str | Path", step: int, keep: int, loop_state: dict,
                    ema=None, write_extra=None) -> Path:
    """Write a checkpoint into a temp folder, seal it with a manifest, rename it into place, rotate.

    ``write_extra(folder)`` (main process) adds the loop's own files, e.g. keep-best's weights."""
    from safetensors.torch import save_model

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
        (tmp / LOOP_STATE).write_text(json.dumps(loop_state))
        if ema is not None:  # every process holds the same average: the main one writes it
            save_model(ema.module, str(tmp / EMA_WEIGHTS))
        if write_extra is not None:
            write_extra(tmp)
        write_manifest(tmp)
        _fsync_tree(tmp)
        if final.exists():  # a rerun reached the same step: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        rotate_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path, ema=None) -> tuple[dict, int]:
    """Restore Accelerate's state and the EMA from ``folder``; returns the loop's counters and the
    scheduler's step saved with it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    if ema is not None and not (folder / EMA_WEIGHTS).is_file():
        raise CheckpointError(f"{folder} has no EMA weights (the run that wrote it had train.ema_decay off); "
                              "resume with the same train.ema_decay")
    try:
        accelerator.load_state(str(folder))
        if ema is not None:
            load_model(ema.module, str(folder / EMA_WEIGHTS))
        saved = json.loads((folder / LOOP_STATE).read_text())
        state = {key: int(saved["state"][key]) for key in LOOP_COUNTERS}
        return state, int(saved["scheduler_step"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"cannot resume from {folder}: {type(exc).__name__}: {exc}") from exc


def rotate_checkpoints(output_dir: "str | Path", keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints; returns the deleted folders."""
    found = list_checkpoints(output_dir)
    doomed = found[: max(0, len(found) - max(1, keep))]
    for path in doomed:
        delete_checkpoint(path)
    return doomed


def delete_checkpoint(path: Path) -> None:
    """Set ``path`` aside under a temp name (one rename: from then on no lookup counts it), then delete it.

    A failure is a ``CheckpointError`` naming the folder, never ignored: a checkpoint that silently stays would
    be picked by rotation or ``latest`` in place of a newer run's.
    """
    aside = path.with_name(TMP_PREFIX + "deleting-" + path.name)
    try:
        if aside.exists():  # an earlier failed delete
            shutil.rmtree(aside)
        os.replace(path, aside)
        shutil.rmtree(aside)
    except OSError as exc:
        where = path if path.exists() else aside
        raise CheckpointError(f"cannot delete old checkpoint {where}: {exc}; delete it by hand "
                              f"(the newer checkpoints in {path.parent} are intact)") from exc


def _fsync_tree(folder: Path) -> None:
    """Flush the files to disk before the rename publishes them (a power cut must not publish zeros)."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
