"""Extraction sharded over two processes returns what one process returns, in the same order.

This file is also the script the test launches: ``accelerate launch ... test_probe_multiprocess.py
MODEL_DIR OUT_DIR`` runs ``main`` in each process (two gloo CPU processes via ACCELERATE_USE_CPU=1 and
--multi_gpu; ``--cpu --num_processes 2`` would start only one).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

NUM_IMAGES = 13  # with batch 4 on 2 processes the last step is padded with duplicates of items 0..2
BROKEN = 5  # an undecodable image: a placeholder travels through the gather and is dropped after


def dataset() -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [(None if i == BROKEN else Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), i % 3)
            for i in range(NUM_IMAGES)]


def transform(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


def main(model_dir: str, out_dir: str) -> None:
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from vit_transfer import load_vit
    from vit_transfer.probe import extract_features

    torch.set_num_threads(1)
    accelerator = Accelerator()
    feats = extract_features(load_vit(model_dir), dataset(), transform, pooling="cls+mean", batch_size=4,
                             accelerator=accelerator, progress=False)
    # the property extraction relies on: gather_for_metrics returns a non-shuffled loader's items in order
    loader = accelerator.prepare_data_loader(DataLoader(list(range(NUM_IMAGES)), batch_size=4))
    raw_order = torch.cat([accelerator.gather_for_metrics(batch) for batch in loader]).tolist()
    torch.save({"features": feats.features, "labels": feats.labels, "indices": feats.indices,
                "num_skipped": feats.num_skipped, "raw_order": raw_order,
                "num_processes": accelerator.num_processes},
               Path(out_dir) / f"rank{accelerator.process_index}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two launched processes: ~15 s of the fast suite's 3 min; the fast suite keeps one 2-process run
def test_two_processes_match_one_process_in_order(tmp_path, hf_vit_dir):
    from vit_transfer import load_vit
    from vit_transfer.probe import extract_features

    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), __file__, str(hf_vit_dir), str(tmp_path)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    single = extract_features(load_vit(hf_vit_dir), dataset(), transform, pooling="cls+mean", batch_size=4,
                              progress=False)
    expected_rows = [i for i in range(NUM_IMAGES) if i != BROKEN]
    assert single.indices.tolist() == expected_rows
    for rank in (0, 1):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert out["num_processes"] == 2
        assert out["raw_order"] == list(range(NUM_IMAGES))  # padding duplicates dropped, order kept
        assert out["indices"].tolist() == expected_rows and out["num_skipped"] == 1
        assert torch.equal(out["labels"], single.labels)
        assert torch.allclose(out["features"], single.features, atol=1e-5)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
