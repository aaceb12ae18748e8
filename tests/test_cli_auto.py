"""``vit-transfer auto``: a thin layer over ``vit_transfer.auto``; its errors are one line and exit code 2."""

import json

from vit_transfer.cli import main
from vit_transfer.testing import write_image_folder


def test_auto_command_writes_the_run_folder(hf_vit_dir, tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", per_class=12)
    out = tmp_path / "run"
    code = main(["auto", str(data), "--model", str(hf_vit_dir), "--budget", "6s", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"returned: {metrics['auto']['chosen']}" in printed and str(out) in printed
    assert metrics["auto"]["budget_seconds"] == 6.0
    assert metrics["auto"]["val_top1"] >= metrics["auto"]["probe_val_top1"]
    assert (out / "leaderboard.md").is_file() and (out / "model").is_dir()


def test_auto_command_says_when_the_budget_kept_every_fine_tune_out(hf_vit_dir, tmp_path, capsys, monkeypatch):
    import vit_transfer.autoselect.run as auto_run

    monkeypatch.setattr(auto_run._Search, "_run_prior", lambda self, steps: 1e6)  # no first-rung run fits
    data = write_image_folder(tmp_path / "data", per_class=12)
    out = tmp_path / "run"
    assert main(["auto", str(data), "--model", str(hf_vit_dir), "--budget", "6s", "--output", str(out)]) == 0
    note = json.loads((out / "metrics.json").read_text())["auto"]["short_budget"]
    assert note.startswith("No fine-tune was tried") and note in capsys.readouterr().out


def test_auto_command_errors_are_one_line(hf_vit_dir, tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", num_classes=1, per_class=4)
    assert main(["auto", str(data), "--model", str(hf_vit_dir), "--output", str(tmp_path / "run")]) == 2
    assert "at least two class" in capsys.readouterr().err
    assert main(["auto", str(data), "--budget", "soon", "--output", str(tmp_path / "run")]) == 2
    assert "budget 'soon' is not a duration" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
