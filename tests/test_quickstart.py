"""The offline quickstart: a shortened run end to end (fast) and the full run's targets (slow)."""

import json
import os

import pytest
import torch

from vit_transfer.quickstart import RESULT_KEYS, QuickstartConfig, run_quickstart

METHODS = ["linear probe", "10-shot linear probe", "LoRA (r=8) fine-tune", "full fine-tune", "full fine-tune, random init"]


# the embedded default must not reach for the network (its id looks like a Hub repo) nor let a library warn
@pytest.mark.filterwarnings("error::FutureWarning", "error::UserWarning")
def test_short_quickstart_writes_table_and_models(tmp_path, capsys, no_network):
    # 16 px (a 4x4 grid) keeps this end-to-end check quick; the slow test runs the documented 32 px
    rows = run_quickstart(QuickstartConfig(output_dir=str(tmp_path), max_steps=2, progress=False, auto_budget=0,
                                           image_size=16))
    assert [r["method"] for r in rows] == METHODS
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == rows
    for row in saved:
        assert tuple(row) == RESULT_KEYS
        assert 0.0 <= row["accuracy"] <= 1.0 and row["seconds"] >= 0 and row["trainable_params"] > 0
    assert [r["pretrained"] for r in saved] == [True, True, True, True, False]
    full, lora = saved[3], saved[2]
    assert lora["trainable_params"] < full["trainable_params"] / 5
    # the probe alone, on frozen pretrained features, is already far above chance (10 classes)
    assert saved[0]["accuracy"] > 0.5
    for name in ("full_finetune", "full_finetune_random_init"):
        assert (tmp_path / name / "model" / "model.safetensors").stat().st_size > 1_000_000
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "linear_probe" / "probe_results.json").is_file()
    table = capsys.readouterr().out
    assert "full fine-tune, random init" in table and "test accuracy" in table
    # a second quickstart into the same folder replaces its own earlier runs (a run owns its folder): one of them
    from vit_transfer.quickstart import _recipe
    from vit_transfer.training import train

    cfg = QuickstartConfig(output_dir=str(tmp_path), max_steps=1, progress=False, image_size=16)
    before = (tmp_path / "full_finetune" / "metrics.json").stat().st_mtime_ns
    assert train(_recipe(cfg, "full_finetune", "full", True, cfg.lr, "sgd")).metrics["steps"] == 1
    assert (tmp_path / "full_finetune" / "metrics.json").stat().st_mtime_ns > before


@pytest.fixture
def cli_threads():
    """The thread count ``vit-transfer quickstart`` runs with (torch's default), not conftest's single thread.

    The full fine-tune's accuracy moves with the reduction order: on the 2-core CI machine 95.1% with
    2 threads (the documented run) and 94.3% with 1, so the targets are checked as users run them.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_full_quickstart_meets_its_targets(tmp_path, cli_threads):
    rows = {r["method"]: r for r in run_quickstart(QuickstartConfig(output_dir=str(tmp_path), progress=False))}
    assert rows["full fine-tune"]["accuracy"] >= 0.95
    assert rows["linear probe"]["accuracy"] >= 0.90
    assert rows["full fine-tune"]["accuracy"] - rows["full fine-tune, random init"]["accuracy"] >= 0.20
    assert sum(r["seconds"] for r in rows.values()) < 300
    auto_row = next(r for name, r in rows.items() if name.startswith("auto (60 s)"))
    assert auto_row["seconds"] <= 1.1 * 60 + 5  # its budget, within 10% (and the test split's scoring)
    assert auto_row["accuracy"] >= 0.85
