"""``accelerate launch -m vit_transfer evaluate`` over two processes reports what one process reports.

Two gloo CPU processes (ACCELERATE_USE_CPU=1 with --multi_gpu); the test split has 11 items (one
undecodable) in batches of 4, so the shards are uneven (2 batches and 1) and nothing may be counted twice.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from test_inference import NAMES, fit_head
from test_probe_multiprocess import free_port


@pytest.mark.slow  # two launched processes plus one in-process run: about 40 s on 2 cores
def test_two_processes_report_what_one_process_reports(tmp_path, hf_vit_dir):
    from vit_transfer.cli import main
    from vit_transfer.models import load_vit
    from vit_transfer.testing import write_image_folder

    folder = write_image_folder(tmp_path / "images", per_class=4, size=40)  # test: 3 classes x 2
    (folder / "test" / "class_1" / "broken.png").write_bytes(b"not an image")
    for i in range(4):
        (folder / "test" / "class_2" / f"x{i}.png").write_bytes((folder / "train" / f"class_{i % 3}" / "0.png").read_bytes())
    model = load_vit(hf_vit_dir, id2label=NAMES)
    fit_head(model, folder)
    model.save(tmp_path / "model")

    args = [str(tmp_path / "model"), "--data", str(folder), "--split", "test", "--batch-size", "4"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "vit_transfer", "evaluate", *args,
               "--output", str(tmp_path / "two")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert main(["evaluate", *args, "--output", str(tmp_path / "one")]) == 0

    one, two = (json.loads((tmp_path / d / "evaluation.json").read_text()) for d in ("one", "two"))
    assert one["num_examples"] == 10 and one["skipped_images"] == 1
    assert 0 < one["top1"] < 1  # the mislabelled copies are mistakes: a report with something in it
    for key in ("num_examples", "skipped", "classes", "confusion_matrix", "most_confused", "per_class"):
        assert two[key] == one[key], key  # counts: exactly equal
    for key in ("top1", "top5", "loss"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key
    assert [{k: w[k] for k in ("path", "true", "predicted")} for w in two["confidently_wrong"]] == \
        [{k: w[k] for k in ("path", "true", "predicted")} for w in one["confidently_wrong"]]
    rows = [list(csv.reader((tmp_path / d / "predictions.csv").open())) for d in ("one", "two")]
    assert [r[:3] for r in rows[0]] == [r[:3] for r in rows[1]] and len(rows[0]) == 11  # header + 10, no duplicates
