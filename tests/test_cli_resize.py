import json
import subprocess
import sys

import torch
from transformers import AutoModelForImageClassification

from vit_transfer.cli import main


def test_resize_cli_writes_a_stock_loadable_model(hf_vit_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["resize", "--model", str(hf_vit_dir), "--image-size", "48x64", "--labels", "cat,dog", "--output", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "grid    4x4 -> 6x8" in text and "labels  2" in text
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.image_size == [48, 64] and model.config.id2label == {0: "cat", 1: "dog"}
    assert model(pixel_values=torch.zeros(1, 3, 48, 64)).logits.shape == (1, 2)


def test_resize_cli_json_and_errors(timm_vit_dir, tmp_path, capsys):
    assert main(["resize", "--model", str(timm_vit_dir), "--image-size", "64", "--patch-size", "16",
                 "--output", str(tmp_path / "o"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_grid"] == [4, 4] and report["new_patch_size"] == [16, 16]
    assert main(["resize", "--model", str(timm_vit_dir), "--image-size", "50", "--output", str(tmp_path / "x")]) == 2
    assert "not a multiple of the patch size" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_console_entry_point_runs_and_help_imports_no_deep_learning_library():
    """``vit-transfer ... --help`` answers at once: neither the package nor the command parsers import torch."""
    probe = ("import sys, runpy\nsys.argv = ['vit-transfer', 'resize', '--help']\ntry:\n"
             "    runpy.run_module('vit_transfer', run_name='__main__')\nexcept SystemExit as exc:\n"
             "    code = exc.code\n"
             "print('imported:', [m for m in ('torch', 'timm', 'transformers', 'peft') if m in sys.modules], code)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--image-size" in proc.stdout and proc.stdout.rstrip().endswith("imported: [] 0")
