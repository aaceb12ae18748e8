"""The checkpoint shipped inside the package: loads offline, checksum-verified, clear error when corrupt."""

import shutil

import pytest
import torch

from vit_transfer import CheckpointError, load_vit
from vit_transfer.data.builtin import FASHION_MNIST_DIR
from vit_transfer.models import builtin


def test_builtin_loads_offline_with_its_labels():
    model = load_vit("vit-transfer/fashion-vit-tiny").eval()
    assert model.ecosystem == "hf" and model.image_size == (28, 28) and model.patch_size == (4, 4)
    assert model.embed_dim == 192 and model.id2label[9] == "Ankle boot"
    folder = builtin.builtin_path("vit-transfer/fashion-vit-tiny")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 15 * 2**20
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 10)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                    reason=f"dataset-fashion-mnist is not installed at {FASHION_MNIST_DIR}")
def test_builtin_classifies_real_fashion_mnist():
    """Skipped only when the optional Debian package is absent: any other failure to read it fails the test."""
    from vit_transfer.data import DataConfig, build_transform, load_image_datasets

    data = load_image_datasets(DataConfig(source="fashion-mnist", max_test_samples=300, eval_split="none"))
    model = load_vit("vit-transfer/fashion-vit-tiny").eval()
    tf = build_transform(model.preprocessing, train=False)
    images = torch.stack([tf(data.test[i][0]) for i in range(len(data.test))])
    labels = torch.tensor([data.test[i][1] for i in range(len(data.test))])
    with torch.no_grad():
        accuracy = (model(images).argmax(-1) == labels).float().mean().item()
    assert accuracy >= 0.85  # the full 10k test set gives 90.2% (see the model card)


def test_corrupt_builtin_is_refused(tmp_path, monkeypatch):
    name = "vit-transfer/fashion-vit-tiny"
    folder_name, digest = builtin.BUILTIN_MODELS[name]
    copy = tmp_path / folder_name
    shutil.copytree(builtin.ASSETS / folder_name, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(builtin, "ASSETS", tmp_path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_vit(name)
    weights.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_vit(name)
