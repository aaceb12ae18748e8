import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# tiny models gain nothing from a second thread, and two spin-waiting threads crawl on a busy 2-core box
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def hf_vit_dir(tmp_path_factory):
    """A tiny random transformers ViT (32 px, patch 8, 3 labels) saved with save_pretrained."""
    from vit_transfer.testing import save_tiny_hf_vit

    return save_tiny_hf_vit(tmp_path_factory.mktemp("hf_vit"))


@pytest.fixture(scope="session")
def timm_vit_dir(tmp_path_factory):
    """A tiny random timm ViT (32 px, patch 8, 3 classes) saved with timm's save_for_hf."""
    from vit_transfer.testing import save_tiny_timm_vit

    return save_tiny_timm_vit(tmp_path_factory.mktemp("timm_vit"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A learnable 3-class image folder (train/test), classes differ by colour."""
    from vit_transfer.testing import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("images"))
