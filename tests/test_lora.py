"""LoRA through peft on both ecosystems: what trains, what is saved, and what reloads."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors import safe_open

from vit_transfer.adapters import (LoraSettings, apply_lora, load_adapter, merge_adapter, resolve_target_modules,
                                   save_adapter)
from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit
from vit_transfer.testing import write_image_folder
from vit_transfer.training import fit, load_train_recipe, train
from vit_transfer.training.config import OptimConfig, TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; avoids spin-waiting threads on a busy CPU
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("colours"), per_class=8)


def colour_batches(n: int = 24, batch: int = 8):
    from PIL import Image

    from vit_transfer.data import build_transform, make_dataloader

    items = [(Image.new("RGB", (32, 32), tuple(200 * (i % 3 == c) for c in range(3))), i % 3) for i in range(n)]
    return lambda model: make_dataloader(items, build_transform(model.preprocessing, False), batch, shuffle=True)


def test_default_targets_are_the_attention_projections(bases):
    hf = load_vit(bases["hf"], num_labels=4)
    assert {t.rsplit(".", 1)[-1] for t in resolve_target_modules(hf, None)} == {"q_proj", "v_proj"}
    assert len(resolve_target_modules(hf, None)) == 4  # 2 blocks x (q, v)
    timm = load_vit(bases["timm"], num_labels=4)
    targets = resolve_target_modules(timm, None)
    assert targets == ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.attn.qkv"]
    assert "patch_embed.proj" not in targets  # a leaf named `proj`, but a Conv2d outside attention
    assert "head" not in resolve_target_modules(timm, ["all-linear"])
    with pytest.raises(ConfigError, match=r"lora.target_modules.*\['query'\].*available leaf names"):
        resolve_target_modules(timm, ["query"])


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_forward_through_the_wrapper_with_native_and_custom_heads(bases, ecosystem, head):
    model = load_vit(bases[ecosystem], num_labels=4, head=head, head_init="trunc_normal", pooling="mean")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    handle = apply_lora(model, LoraSettings(r=4))
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # lora_B starts at zero: same function
    assert handle.modules_to_save == model.head_module_names()
    assert 0 < handle.trainable_parameters < handle.total_parameters and 0 < handle.trainable_percent < 100
    assert all("lora_" in n or ".modules_to_save." in n for n in handle.trainable_names)
    assert any(".modules_to_save." in n for n in handle.trainable_names)  # the new head trains in full
    # one gradient step through the TransferModel forward reaches the adapters and the head
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_a_lora_run_changes_only_adapters_and_head(bases, ecosystem):
    model = load_vit(bases[ecosystem], num_labels=3)
    fresh = {k: v.clone() for k, v in load_vit(bases[ecosystem], num_labels=3).state_dict().items()}
    handle = apply_lora(model, LoraSettings(r=4, alpha=8))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(handle.trainable_names)
    assert all(".lora_A." in n or ".lora_B." in n or ".modules_to_save." in n for n in trainable)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    fit(model, colour_batches()(model), optim=OptimConfig(name="adamw", lr=0.01),
        train=TrainConfig(max_steps=6, log_every=3))
    after = dict(model.named_parameters())
    for name, value in start.items():
        if name in trainable:
            continue
        assert torch.equal(after[name].detach(), value), f"frozen weight {name} moved"
        original = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        assert torch.equal(value, fresh[original]), name  # and it is the pretrained weight
    lora_b = [n for n in trainable if ".lora_B." in n]
    head = [n for n in trainable if ".modules_to_save." in n]
    assert lora_b and head
    assert all(not torch.equal(after[n].detach(), start[n]) for n in lora_b + head)
    assert all(torch.count_nonzero(start[n]) == 0 for n in lora_b)  # they started at zero


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_lora_run_saves_adapter_and_a_merged_model_with_the_same_logits(tmp_path, bases, images, ecosystem):
    out = tmp_path / "run"
    recipe = {
        "model": {"source": str(bases[ecosystem])},
        "data": {"source": str(images), "num_workers": 0, "val_fraction": 0.25},
        "augment": {"crop": "resize", "hflip": False},
        "method": "lora",
        "lora": {"r": 4, "alpha": 8, "merge": True},
        "optim": {"name": "adamw", "lr": 0.02},
        "train": {"max_steps": 8, "batch_size": 6, "log_every": 4, "keep_best": False},  # the last step's export
        "output": {"dir": str(out), "log_with": "none"},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = train(load_train_recipe(tmp_path / "r.yaml"))
    assert result.adapter.trainable_parameters == result.metrics["trainable_parameters"]
    assert 0 < result.metrics["trainable_percent"] < 50

    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(bases[ecosystem])
    assert config["modules_to_save"] == ["classifier" if ecosystem == "hf" else "head"]
    assert json.loads((out / "run_info.json").read_text())["method"] == "lora"

    # adapter path: a fresh base + the adapter (head included) ...
    base = load_vit(bases[ecosystem], num_labels=3)
    load_adapter(base, out / "adapter")
    # ... against the merged export, loaded with no peft in sight
    with safe_open(str(out / "model" / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert not any("lora_" in k or "modules_to_save" in k or "base_layer" in k for k in keys)
    merged = load_vit(out / "model")
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        adapter_logits, merged_logits = base.eval()(x), merged.eval()(x)
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-5, rtol=1e-5)
    assert adapter_logits.abs().max() > 1e-3  # the trained head, not a zero one
    assert merged.id2label == {0: "class_0", 1: "class_1", 2: "class_2"}


def test_adapter_without_merge_leaves_no_model_folder(tmp_path, bases, images):
    out = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(bases["hf"])},
        "data": {"source": str(images), "num_workers": 0},
        "method": "lora", "lora": {"merge": False},
        "train": {"max_steps": 2, "batch_size": 6},
        "output": {"dir": str(out), "log_with": "none"},
    }))
    train(load_train_recipe(tmp_path / "r.yaml"))
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not (out / "model").exists()


def test_parameter_counts_count_the_head_once(bases):
    model = load_vit(bases["hf"], num_labels=4)
    before = sum(p.numel() for p in model.parameters())
    handle = apply_lora(model, LoraSettings(r=4))
    hidden = model.model.config.hidden_size
    lora_weights = 4 * 2 * 4 * hidden  # 2 blocks x (q, v) x (A: r x hidden + B: hidden x r)
    head = hidden * 4 + 4  # trained in full (the copy in modules_to_save)
    assert handle.trainable_parameters == lora_weights + head
    assert handle.total_parameters == before + lora_weights  # the base (its head once) + the adapters
    # peft's own total also counts the frozen original of the head kept beside its trained copy
    peft_trainable, peft_total = handle.peft_model.get_nb_trainable_parameters()
    assert (peft_trainable, peft_total) == (handle.trainable_parameters, handle.total_parameters + head)


def test_lora_rank_is_checked_where_the_recipe_is_read():
    with pytest.raises(ConfigError, match="lora.r must be a positive integer, got 0"):
        load_train_recipe(None, ["method=lora", "lora.r=0"])


def test_adapter_round_trip_on_the_builtin_model_is_offline_and_quiet(tmp_path, no_network):
    """The embedded default's id looks like a Hub repo: peft must not look it up, and nothing may warn."""
    import warnings

    x = torch.randn(2, 3, 28, 28)  # the shipped ViT takes grey digits as 3 equal channels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peft's "Unable to fetch remote file", transformers' FutureWarning
        model = load_vit("vit-transfer/fashion-vit-tiny", num_labels=3)
        apply_lora(model, LoraSettings(r=2))
        for name, p in model.named_parameters():
            if "lora_B" in name or ".modules_to_save." in name:
                torch.nn.init.normal_(p, std=0.1)
        with torch.no_grad():
            expected = model.eval()(x)
        save_adapter(model, tmp_path / "adapter")
        base = load_vit("vit-transfer/fashion-vit-tiny", num_labels=3)
        load_adapter(base, tmp_path / "adapter")
        with torch.no_grad():
            torch.testing.assert_close(base.eval()(x), expected)
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "vit-transfer/fashion-vit-tiny")


def test_merge_adapter_makes_a_plain_model(bases):
    model = load_vit(bases["hf"], num_labels=3)
    apply_lora(model, LoraSettings(r=2))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    merge_adapter(model)
    assert type(model.model).__name__ == "ViTForImageClassification"
    assert not any("lora_" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
