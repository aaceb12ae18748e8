"""The method menu (vit_transfer.methods): what each method trains, what one step moves, what its export reloads as."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from vit_transfer.adapters import LoraSettings, apply_lora, load_adapter, merge_adapter
from vit_transfer.errors import ConfigError
from vit_transfer.methods import METHODS, prepare_method
from vit_transfer.models import load_vit
from vit_transfer.testing import write_image_folder
from vit_transfer.training import fit, load_train_recipe, train
from vit_transfer.training.config import OptimConfig, TrainConfig

def _oft_options() -> dict:
    """OFT sets its block size with ``oft_block_size`` in newer peft; peft 0.13 (the floor) has only ``r`` blocks."""
    import dataclasses

    from peft import OFTConfig

    return ({"r": 0, "oft_block_size": 4} if "oft_block_size" in {f.name for f in dataclasses.fields(OFTConfig)}
            else {"r": 8})


PEFT_TYPES = {  # tiny-model options: block sizes must divide the width (32), frequencies fit 32 x 32
    "LOHA": {"r": 4}, "LOKR": {"r": 4}, "IA3": {}, "VERA": {"r": 4}, "BOFT": {"boft_block_size": 4},
    "OFT": _oft_options(), "FOURIERFT": {"n_frequency": 64},
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("colours"), per_class=8)


def colour_loader(model, n: int = 12, batch: int = 6):
    from PIL import Image

    from vit_transfer.data import build_transform, make_dataloader

    items = [(Image.new("RGB", (32, 32), tuple(200 * (i % 3 == c) for c in range(3))), i % 3) for i in range(n)]
    return make_dataloader(items, build_transform(model.preprocessing, False), batch, shuffle=True)


def expected_trainable(model, method: str) -> set[str]:
    """An oracle from names and module types alone."""
    head = {f"model.{h}." for h in model.head_module_names()}
    in_head = {n for n, _ in model.named_parameters() if any(n.startswith(h) for h in head)}
    if method == "bitfit":
        return in_head | {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    if method == "norm":
        norms = {name for name, m in model.named_modules() if "LayerNorm" in type(m).__name__}
        return in_head | {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[0] in norms}
    raise ValueError(method)


def one_step_moves(model) -> set[str]:
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, colour_loader(model), optim=OptimConfig(name="sgd", lr=0.5, clip_grad_norm=None),
        train=TrainConfig(max_steps=1, batch_size=6, log_every=1))
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), start[n])}


def test_the_menu_and_its_errors():
    assert list(METHODS) == ["full", "head", "lora", "bitfit", "norm", "peft", "ssf", "vpt"]
    with pytest.raises(ConfigError, match="method must be one of full, head, lora, bitfit, norm, peft, ssf, vpt, got 'vtp'"):
        load_train_recipe(None, ["method=vtp"])
    with pytest.raises(ConfigError, match="vpt.tokens"):
        load_train_recipe(None, ["method=vpt", "vpt.tokens=0"])
    with pytest.raises(ConfigError, match=r"peft.peft_type 'NOPE' .*known: .*IA3.*LOHA.*LOKR.*VERA"):
        load_train_recipe(None, ["method=peft", "peft.peft_type=NOPE"])
    with pytest.raises(ConfigError, match="needs peft.peft_type"):
        load_train_recipe(None, ["method=peft"])
    with pytest.raises(ConfigError, match=r"peft.rank is not an option of peft's LoHaConfig"):
        load_train_recipe(None, ["method=peft", "peft.peft_type=LOHA", "peft.rank=4"])
    with pytest.raises(ConfigError, match="peft: section is read only with method: peft"):
        load_train_recipe(None, ["method=lora", "peft.peft_type=LOHA"])
    with pytest.raises(ConfigError, match="model.head must be linear"):
        load_train_recipe(None, ["model.head_init=probe", "model.head=mlp"])
    assert load_train_recipe(None, ["method=peft", "peft.peft_type=loha", "peft.r=4"]).peft == {"peft_type": "loha", "r": 4}


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("method", ["bitfit", "norm"])
def test_bitfit_and_norm_train_only_their_parameters(bases, ecosystem, method):
    model = load_vit(bases[ecosystem], num_labels=3, head_init="trunc_normal")  # a live head: gradients reach the body
    prepared = prepare_method(model, method)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(model, method)
    assert any("attn" in n or "attention" in n for n in trainable) if method == "bitfit" else True
    assert prepared.trainable_parameters == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert prepared.total_parameters == sum(p.numel() for p in model.parameters())
    moved = one_step_moves(model)
    assert moved <= trainable and len(moved) > len(trainable) // 2
    assert any(".bias" in n and "head" not in n and "classifier" not in n for n in moved)


def run_recipe(tmp_path, base, images, method: str, **sections) -> tuple:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "run"
    recipe = {
        "model": {"source": str(base), **sections.pop("model", {})},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": 0.25},
        "augment": {"crop": "resize", "hflip": False},
        "method": method,
        "optim": {"name": "adamw", "lr": 0.02},
        # the exports of the last step's weights (a 3-step run rarely beats its start on validation)
        "train": {"max_steps": 3, "batch_size": 6, "log_every": 3, "keep_best": False},
        "output": {"dir": str(out), "log_with": "none"},
        **sections,
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    return train(load_train_recipe(tmp_path / "r.yaml")), out


def stock_logits(folder, ecosystem: str, x: torch.Tensor) -> torch.Tensor:
    """Logits from the ecosystem's own loader, no vit-transfer involved."""
    with torch.no_grad():
        if ecosystem == "hf":
            from transformers import AutoModelForImageClassification

            return AutoModelForImageClassification.from_pretrained(folder).eval()(pixel_values=x).logits
        import timm

        return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()(x)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("method", ["bitfit", "norm"])
def test_bitfit_and_norm_export_a_plain_model(tmp_path, bases, images, ecosystem, method):
    result, out = run_recipe(tmp_path, bases[ecosystem], images, method)
    assert not (out / "adapter").exists()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        trained = result.model.eval()(x)
    torch.testing.assert_close(load_vit(out / "model").eval()(x), trained, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stock_logits(out / "model", ecosystem, x), trained, atol=1e-5, rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_parameters"] == result.method.trainable_parameters
    assert metrics["trainable_parameters"] == sum(
        p.numel() for n, p in result.model.named_parameters() if n in expected_trainable(result.model, method))
    assert json.loads((out / "run_info.json").read_text())["method"] == method


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_dora_and_rslora_merge_to_the_same_function(bases, ecosystem):
    x = torch.randn(3, 3, 32, 32)
    for settings in (LoraSettings(r=4, use_dora=True), LoraSettings(r=4, alpha=8, use_rslora=True),
                     LoraSettings(r=4, use_dora=True, use_rslora=True)):
        model = load_vit(bases[ecosystem], num_labels=3, head_init="trunc_normal")
        handle = apply_lora(model, settings)
        cfg = handle.peft_model.peft_config["default"]
        assert (cfg.use_dora, cfg.use_rslora) == (settings.use_dora, settings.use_rslora)
        layer = handle.peft_model.get_submodule(handle.target_modules[0])
        scale = settings.alpha / (settings.r ** 0.5 if settings.use_rslora else settings.r)
        assert layer.scaling["default"] == pytest.approx(scale)
        assert any("lora_magnitude_vector" in n for n in handle.trainable_names) == settings.use_dora
        for name, p in model.named_parameters():
            if p.requires_grad:  # a trained-looking adapter: B and the DoRA magnitudes away from their init
                torch.nn.init.normal_(p, mean=1.0 if "magnitude" in name else 0.0, std=0.3)
        with torch.no_grad():
            unmerged = model.eval()(x)
        merge_adapter(model)
        assert not any("lora_" in n for n, _ in model.named_parameters())
        with torch.no_grad():
            torch.testing.assert_close(model(x), unmerged, atol=1e-5, rtol=1e-5)


def test_a_dora_run_exports_adapter_and_merged_model(tmp_path, bases, images):
    result, out = run_recipe(tmp_path, bases["timm"], images, "lora",
                             lora={"r": 4, "alpha": 8, "use_dora": True, "merge": True})
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["use_dora"] is True
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        trained = result.model.eval()(x)
    base = load_vit(bases["timm"], num_labels=3)
    load_adapter(base, out / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(base.eval()(x), trained, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stock_logits(out / "model", "timm", x), trained, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("peft_type", list(PEFT_TYPES))
def test_peft_tuners_train_only_their_weights_and_the_head(bases, ecosystem, peft_type):
    model = load_vit(bases[ecosystem], num_labels=3, head_init="trunc_normal")
    leaves = model.default_lora_targets()  # LoRA's default targets, read before peft replaces the layers
    lora_targets = sorted(n for n, m in model.model.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in leaves)
    prepared = prepare_method(model, "peft", {"peft_type": peft_type, **PEFT_TYPES[peft_type]})
    handle = prepared.adapter
    assert handle.peft_type == peft_type
    assert handle.modules_to_save == model.head_module_names()
    assert handle.target_modules == lora_targets
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    targets = tuple(f"model.{t}." for t in handle.target_modules)  # peft injects into model.model in place
    for name in trainable:  # a tuner weight inside a targeted layer (not its frozen base), or the head's trained copy
        assert ".modules_to_save." in name or (name.startswith(targets) and ".base_layer." not in name), name
    assert any(".modules_to_save." in n for n in trainable) and any(".modules_to_save." not in n for n in trainable)
    assert prepared.trainable_parameters == sum(p.numel() for p in model.parameters() if p.requires_grad)
    original_head = sum(p.numel() for n, p in model.named_parameters() if ".original_module." in n)
    assert prepared.total_parameters == sum(p.numel() for p in model.parameters()) - original_head > 0
    moved = one_step_moves(model)
    assert moved <= trainable and any(".modules_to_save." not in n for n in moved)


@pytest.mark.parametrize(("ecosystem", "peft_type"), [("hf", "LOHA"), ("timm", "IA3"), ("hf", "FOURIERFT")])
def test_a_peft_run_exports_an_adapter_peft_loads_and_a_merged_model(tmp_path, bases, images, ecosystem, peft_type):
    from peft import PeftModel

    result, out = run_recipe(tmp_path, bases[ecosystem], images, "peft",
                             peft={"peft_type": peft_type, **PEFT_TYPES[peft_type]})
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type and config["modules_to_save"] == load_vit(bases[ecosystem]).head_module_names()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        trained = result.model.eval()(x)  # merged in place at export
        native = load_vit(bases[ecosystem], num_labels=3).model  # the stock module, then peft's own loader
        adapted = PeftModel.from_pretrained(native, str(out / "adapter")).eval()
        logits = adapted(pixel_values=x).logits if ecosystem == "hf" else adapted(x)
    torch.testing.assert_close(logits, trained, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stock_logits(out / "model", ecosystem, x), trained, atol=1e-5, rtol=1e-5)
    assert trained.abs().max() > 1e-3  # the trained head, not a zero one
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_parameters"] == result.method.trainable_parameters
    assert 0 < metrics["trainable_percent"] < 100


def test_peft_target_modules_are_resolved_and_checked(bases):
    model = load_vit(bases["timm"], num_labels=3)
    prepared = prepare_method(model, "peft", {"peft_type": "IA3", "target_modules": ["qkv", "fc2"],
                                              "feedforward_modules": ["fc2"]})
    cfg = prepared.adapter.peft_model.peft_config["default"]
    assert sorted(cfg.target_modules) == ["blocks.0.attn.qkv", "blocks.0.mlp.fc2", "blocks.1.attn.qkv", "blocks.1.mlp.fc2"]
    assert sorted(cfg.feedforward_modules) == ["blocks.0.mlp.fc2", "blocks.1.mlp.fc2"]
    one = prepare_method(load_vit(bases["timm"], num_labels=3), "peft",
                         {"peft_type": "LOKR", "target_modules": "all-linear"})
    assert "blocks.1.mlp.fc1" in one.adapter.target_modules and "head" not in one.adapter.target_modules
    with pytest.raises(ConfigError, match=r"peft.target_modules: \['query'\] match no Linear"):
        prepare_method(load_vit(bases["timm"], num_labels=3), "peft",
                       {"peft_type": "LOHA", "target_modules": ["query"]})


def test_push_knows_each_method(tmp_path, bases, images):
    """A peft run pushes its merged model by default, its adapter on request; the card names the tuner."""
    from huggingface_hub import ModelCard

    from vit_transfer.hub import push_run

    _, out = run_recipe(tmp_path / "loha", bases["hf"], images, "peft", peft={"peft_type": "LOHA", "r": 4})
    auto = push_run(out, "me/loha", dry_run_dir=tmp_path / "auto")
    assert auto.what == "merged" and auto.library_name == "transformers"
    adapter = push_run(out, "me/loha", what="adapter", dry_run_dir=tmp_path / "adapter")
    assert adapter.library_name == "peft"
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert {"peft", "loha"} <= set(card.data.tags)
    text = card.text
    assert "| Training method | peft LOHA |" in text and "## Adapter settings" in text and "`classifier`" in text

    _, out = run_recipe(tmp_path / "bitfit", bases["timm"], images, "bitfit", model={"head_init": "probe"})
    push_run(out, "me/bitfit", dry_run_dir=tmp_path / "bitfit-up")
    text = (tmp_path / "bitfit-up" / "README.md").read_text()
    assert "| Training method | BitFit (biases + head), head started from the linear probe (LP-FT) |" in text
    assert "LP-FT: the starting probe's validation top-1" in text


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_an_ssf_run_exports_the_merged_plain_model(tmp_path, bases, images, ecosystem):
    result, out = run_recipe(tmp_path, bases[ecosystem], images, "ssf")
    assert result.method.trainable_parameters < 0.2 * result.method.total_parameters
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        trained = result.model.eval()(x)  # merged at export: the same function, the stock architecture
    torch.testing.assert_close(stock_logits(out / "model", ecosystem, x), trained, atol=1e-5, rtol=1e-5)
    assert not (out / "adapter").exists()


@pytest.mark.parametrize(("ecosystem", "deep", "stock"), [("timm", False, True), ("timm", True, False),
                                                           ("hf", False, False)])
def test_a_vpt_run_exports_what_reloads_to_the_trained_logits(tmp_path, bases, images, ecosystem, deep, stock):
    from vit_transfer.adapters.vpt import PROMPTS_FILE
    from vit_transfer.hub import push_run

    result, out = run_recipe(tmp_path, bases[ecosystem], images, "vpt", vpt={"tokens": 3, "deep": deep},
                             model={"head_init": "trunc_normal"})
    assert "VPT" in result.method.description
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        trained = result.model.eval()(x)
        torch.testing.assert_close(load_vit(out / "model").eval()(x), trained, atol=1e-5, rtol=1e-5)
    assert (out / "model" / PROMPTS_FILE).exists() != stock
    if stock:  # shallow prompts as timm register tokens: timm's own loader gives the trained logits
        torch.testing.assert_close(stock_logits(out / "model", ecosystem, x), trained, atol=1e-5, rtol=1e-5)
    else:  # the prompts travel with a push, and the card says how to load them
        push_run(out, "me/vpt", dry_run_dir=tmp_path / "up")
        assert (tmp_path / "up" / PROMPTS_FILE).exists()
        text = (tmp_path / "up" / "README.md").read_text()
        assert "load_vit" in text and PROMPTS_FILE in text
