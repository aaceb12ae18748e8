"""tools/ship_builtin.py: the weight soups and the model card's reproduce block (the shipped card's claims)."""

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TOOL = Path(__file__).resolve().parent.parent / "tools" / "ship_builtin.py"


def _tool():
    spec = importlib.util.spec_from_file_location("ship_builtin", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, weight: torch.Tensor) -> None:
    (folder / "model").mkdir(parents=True)
    save_file({"w": weight}, str(folder / "model" / "model.safetensors"))
    (folder / "model" / "config.json").write_text(json.dumps({"dtype": "bfloat16", "hidden_size": 2}))


def test_intermediate_soup_is_the_weighted_average_stored_in_float16(tmp_path, monkeypatch):
    tool = _tool()
    monkeypatch.chdir(tmp_path)
    _run(tmp_path / "a", torch.tensor([1.0, 2.0, 3.0]))
    _run(tmp_path / "b", torch.tensor([11.0, 12.0, 13.0]))
    monkeypatch.setattr(tool, "INTERMEDIATE_SOUPS", {"ab": {"a": 0.7, "b": 0.3}})
    tool.write_intermediate_soup("ab")
    weights = load_file("ab/model/model.safetensors")["w"]
    assert weights.dtype == torch.float16
    assert torch.equal(weights, torch.tensor([4.0, 5.0, 6.0], dtype=torch.float16))  # 0.7 a + 0.3 b
    assert json.loads(Path("ab/model/config.json").read_text()) == {"dtype": "float32", "hidden_size": 2}


def test_card_names_nested_soups_and_reproduces_the_soup_step():
    tool = _tool()
    assert tool.describe("runs/pretrain-fashion-mnist-phase4") == "phase 4"
    nested = tool.describe("runs/pretrain-fashion-mnist-soup45")
    assert nested == "(0.7 x phase 4 + 0.3 x phase 5)"
    phases = [{"test_top1": 0.8 + i / 100, "steps": 10, "seconds": 60, "images_seen": 640, "precision": "no"}
              for i in range(len(tool.PHASES))]
    metrics = {"seconds": 60 * len(phases), "steps": 10 * len(phases), "images_seen": 640 * len(phases),
               "trainable_parameters": 5, "phases": phases}
    config = {"id2label": {"0": "a", "1": "b"}, "num_hidden_layers": 6, "hidden_size": 192,
              "num_attention_heads": 3, "intermediate_size": 768, "image_size": 28, "patch_size": 4}
    card = tool.model_card(metrics, 0.9012, 10000, config, tool.SOUP)
    lines = card.splitlines()
    soup_step = lines.index("python tools/ship_builtin.py soup runs/pretrain-fashion-mnist-soup45")
    assert "model.source=runs/pretrain-fashion-mnist-soup45/model" in lines[soup_step + 1]  # the phase it feeds
    assert "**90.12%**" in card and f"{len(phases)} phases" in card
    assert all(tool.describe(run) in card for run in tool.SOUP)
