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
def bases(hf_vit_dir, timm_vit_dir):
    """Both tiny checkpoints by ecosystem, for tests parametrised over ``"hf"`` and ``"timm"``."""
    return {"hf": hf_vit_dir, "timm": timm_vit_dir}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A learnable 3-class image folder (train/test), classes differ by colour."""
    from vit_transfer.testing import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture
def no_network(monkeypatch):
    """Any name lookup or socket connection fails the test; offline mode is off, as on a user's first run.

    Yields the list of attempted addresses (an attempt inside a library's ``except Exception`` is still seen).
    """
    import socket

    from huggingface_hub import constants

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1] if len(args) > 1 and isinstance(args[0], socket.socket) else args[:2])
        raise OSError(f"test forbids network access: {attempts[-1]}")

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module, as when run from there (``benchmarks/`` on ``sys.path`` for its
    shared helpers, the module registered before it runs so its dataclasses can find it)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
