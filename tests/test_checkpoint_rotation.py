"""Rotation deletes old checkpoints or fails loudly: a checkpoint it could not delete must not stay a candidate."""

import shutil

import pytest

from vit_transfer.errors import CheckpointError
from vit_transfer.training.checkpoints import (CHECKPOINT_DIR, checkpoint_name, list_checkpoints, resolve_resume,
                                               rotate_checkpoints, write_manifest)


def make_checkpoints(output_dir, steps):
    for step in steps:
        folder = output_dir / CHECKPOINT_DIR / checkpoint_name(step)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x" * step)
        write_manifest(folder)


def test_rotation_keeps_the_newest(tmp_path):
    make_checkpoints(tmp_path, [10, 20, 30, 40])
    deleted = rotate_checkpoints(tmp_path, keep=2)
    assert [p.name for p in deleted] == [checkpoint_name(10), checkpoint_name(20)]
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(30), checkpoint_name(40)]
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == [checkpoint_name(30), checkpoint_name(40)]


def test_a_failed_delete_is_an_error_naming_the_folder_and_never_a_resume_candidate(tmp_path, monkeypatch):
    make_checkpoints(tmp_path, [10, 20, 30])
    real_rmtree = shutil.rmtree

    def refuse(path, *args, **kwargs):
        if kwargs.get("ignore_errors"):
            return None  # what ignore_errors=True did: nothing, silently
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(CheckpointError, match=checkpoint_name(10)) as caught:
        rotate_checkpoints(tmp_path, keep=2)
    assert "Permission denied" in str(caught.value)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    # the folder it could not delete is set aside, so neither rotation nor `latest` counts it as a checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == [checkpoint_name(20), checkpoint_name(30)]
    assert resolve_resume("latest", tmp_path).name == checkpoint_name(30)
