"""HF <-> timm conversion: equal logits through the stock loaders, exact round trips, clear refusals."""

import json

import pytest
import torch
from torch.testing import assert_close

from vit_transfer.errors import ConfigError, NotAViTError, VitTransferError
from vit_transfer.models import load_vit
from vit_transfer.models.convert import (
    FALLBACK_TIMM_ARCHITECTURE,
    LAYER_NORM_EPS_KEY,
    convert_checkpoint,
    convert_vit,
    read_vit,
    timm_architecture_for,
)
from vit_transfer.models.hf_vit import HFViT
from vit_transfer.models.timm_vit import TimmViT
from vit_transfer.testing import tiny_hf_vit, tiny_timm_vit

LABELS = {0: "cat", 1: "dog", 2: "bird"}
MEAN, STD = (0.25, 0.5, 0.75), (0.2, 0.3, 0.4)
# converted in memory: the same arithmetic in another module layout (fused vs split qkv matmuls)
TIGHT = dict(atol=1e-6, rtol=1e-6)


def _batch(size, n=4, seed=1):
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _strong_head(head: torch.nn.Linear, seed: int = 2) -> None:
    """Unit-scale head weights, so logits are O(1) and a tolerance means something."""
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)))


def _hf_source(folder, image_size=32, **kwargs):
    """A tiny HF ViT with label names, non-default mean/std and a unit-scale head, saved by HFViT.save."""
    from vit_transfer.models.base import Preprocessing

    net = tiny_hf_vit(image_size=image_size, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, **kwargs)
    _strong_head(net.classifier)
    size = image_size if isinstance(image_size, list) else [image_size, image_size]
    HFViT(net, preprocessing=Preprocessing(image_size=tuple(size), mean=MEAN, std=STD)).save(folder)
    return folder


def _timm_source(folder, **kwargs):
    """A tiny timm ViT (eps 1e-6, mlp ratio 4) with label names and non-default mean/std, saved by save_for_hf."""
    from timm.models import save_for_hf

    net = tiny_timm_vit(**kwargs)
    _strong_head(net.head)
    net.pretrained_cfg = {**net.pretrained_cfg, "mean": MEAN, "std": STD}
    save_for_hf(net, folder, model_config={"label_names": list(LABELS.values())}, safe_serialization=True)
    return folder


def _stock_hf(folder):
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(folder).eval()


def _stock_timm(folder):
    import timm

    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def _set_eps(net, eps):
    for m in net.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = eps


@torch.no_grad()
def test_hf_to_timm_stock_reload_gives_the_hf_logits(tmp_path):
    src = _hf_source(tmp_path / "hf")
    out = convert_checkpoint(src, "timm", tmp_path / "timm")
    x = _batch((32, 32))
    expected = _stock_hf(src)(pixel_values=x).logits
    timm_net = _stock_timm(out)
    assert expected.abs().max() > 0.5  # logits big enough for the tolerances below to bite

    # timm's config.json cannot carry LayerNorm eps, so the stock reload runs at 1e-6 instead of
    # 1e-12: a relative change of about eps / (2 var) in each norm, far below 1e-5 here
    assert [m.eps for m in timm_net.modules() if isinstance(m, torch.nn.LayerNorm)][0] == 1e-6
    assert_close(timm_net(x), expected, atol=1e-5, rtol=1e-5)
    # and eps is the only difference: with the recorded eps the reload matches tightly
    cfg = json.loads((out / "config.json").read_text())
    assert cfg[LAYER_NORM_EPS_KEY] == 1e-12
    _set_eps(timm_net, cfg[LAYER_NORM_EPS_KEY])
    assert_close(timm_net(x), expected, **TIGHT)

    assert cfg["architecture"] == FALLBACK_TIMM_ARCHITECTURE
    assert cfg["model_args"]["embed_dim"] == 32 and cfg["model_args"]["mlp_ratio"] == 2.0
    assert cfg["label_names"] == ["cat", "dog", "bird"]
    assert tuple(timm_net.pretrained_cfg["mean"]) == MEAN and tuple(timm_net.pretrained_cfg["std"]) == STD
    assert tuple(timm_net.pretrained_cfg["input_size"]) == (3, 32, 32)
    assert "tag" not in cfg["pretrained_cfg"] and "license" not in cfg["pretrained_cfg"]  # not vit_base's


@torch.no_grad()
def test_timm_to_hf_stock_reload_gives_the_timm_logits(tmp_path):
    src = _timm_source(tmp_path / "timm")
    out = convert_checkpoint(src, "hf", tmp_path / "hf")
    x = _batch((32, 32))
    expected = _stock_timm(src)(x)
    hf_net = _stock_hf(out)
    assert expected.abs().max() > 0.5
    assert_close(hf_net(pixel_values=x).logits, expected, **TIGHT)
    assert hf_net.config.layer_norm_eps == 1e-6  # timm's eps carried into the HF config
    assert hf_net.config.intermediate_size == 128
    assert hf_net.config.id2label == LABELS
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert tuple(pre["image_mean"]) == MEAN and tuple(pre["image_std"]) == STD
    assert pre["size"] == {"height": 32, "width": 32}


@pytest.mark.parametrize("options", [{}, {"qkv_bias": False}, {"hidden_act": "gelu_pytorch_tanh"}, {"num_labels": 0}])
@torch.no_grad()
def test_convert_vit_in_memory_keeps_the_function(options):
    hf = HFViT(tiny_hf_vit(**options))
    if options.get("num_labels") != 0:
        _strong_head(hf.model.classifier)
    timm_model = convert_vit(hf, "timm")
    back = convert_vit(timm_model, "hf")
    x = _batch((32, 32))
    assert isinstance(timm_model, TimmViT) and isinstance(back, HFViT)
    assert_close(timm_model(x), hf(x), **TIGHT)  # source eps (1e-12) kept in memory
    assert_close(back(x), hf(x), **TIGHT)
    assert back.model.config.hidden_act == hf.model.config.hidden_act
    assert back.model.config.qkv_bias == hf.model.config.qkv_bias


def test_round_trip_hf_timm_hf_is_identical(tmp_path):
    src = _hf_source(tmp_path / "hf")
    mid = convert_checkpoint(src, "timm", tmp_path / "timm")
    back = convert_checkpoint(mid, "hf", tmp_path / "back")
    a, b = _stock_hf(src), _stock_hf(back)
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]
    for key in ("layer_norm_eps", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "image_size", "patch_size", "qkv_bias", "hidden_act", "id2label"):
        assert getattr(b.config, key) == getattr(a.config, key), key
    pa = json.loads((src / "preprocessor_config.json").read_text())
    pb = json.loads((back / "preprocessor_config.json").read_text())
    assert {k: pb[k] for k in ("image_mean", "image_std", "size", "resample")} == {
        k: pa[k] for k in ("image_mean", "image_std", "size", "resample")
    }


@torch.no_grad()
def test_non_square_image_both_ways(tmp_path):
    src = _hf_source(tmp_path / "hf", image_size=[32, 48])
    out = convert_checkpoint(src, "timm", tmp_path / "timm")
    x = _batch((32, 48))
    expected = _stock_hf(src)(pixel_values=x).logits
    timm_net = _stock_timm(out)
    assert tuple(timm_net.patch_embed.img_size) == (32, 48)
    assert tuple(timm_net.pretrained_cfg["input_size"]) == (3, 32, 48)
    _set_eps(timm_net, 1e-12)
    assert_close(timm_net(x), expected, **TIGHT)
    back = convert_checkpoint(out, "hf", tmp_path / "back")
    hf_back = _stock_hf(back)
    assert hf_back.config.image_size == [32, 48]
    assert_close(hf_back(pixel_values=x).logits, expected, **TIGHT)


def test_timm_architecture_name_follows_the_size():
    spec, _ = read_vit(HFViT(tiny_hf_vit()))
    base = dict(hidden_size=768, depth=12, num_heads=12, intermediate_size=3072, patch_size=(16, 16))
    from dataclasses import replace

    assert timm_architecture_for(replace(spec, **base, image_size=(224, 224))) == "vit_base_patch16_224"
    assert timm_architecture_for(replace(spec, **base, image_size=(384, 384))) == "vit_base_patch16_384"
    assert timm_architecture_for(replace(spec, **base, image_size=(160, 96))) == "vit_base_patch16_224"
    large = dict(hidden_size=1024, depth=24, num_heads=16, intermediate_size=4096, patch_size=(14, 14))
    assert timm_architecture_for(replace(spec, **large, image_size=(224, 224))) == "vit_large_patch14_224"
    assert timm_architecture_for(spec) == FALLBACK_TIMM_ARCHITECTURE  # tiny width: no named size


def _custom_head_hf():
    model = HFViT(tiny_hf_vit())
    model.set_head(4, kind="mlp")
    return model


@pytest.mark.parametrize(
    "make, to, message",
    [
        (lambda: HFViT(tiny_hf_vit("deit")), "timm", "distillation token"),
        (lambda: HFViT(tiny_hf_vit("dinov2_with_registers", num_register_tokens=4)), "timm", "register tokens"),
        (lambda: HFViT(tiny_hf_vit(hidden_act="relu")), "timm", "activation 'relu'"),
        (_custom_head_hf, "timm", "custom mlp head"),
        (lambda: TimmViT(tiny_timm_vit(architecture="deit_tiny_distilled_patch16_224")), "hf", "distillation token"),
        (lambda: TimmViT(tiny_timm_vit(reg_tokens=4)), "hf", "4 register tokens"),
        (lambda: TimmViT(tiny_timm_vit(act_layer="relu")), "hf", "non-GELU MLP activation"),
        (lambda: TimmViT(tiny_timm_vit(global_pool="avg")), "hf", "global_pool='avg'"),
        (lambda: TimmViT(tiny_timm_vit(init_values=1e-5)), "hf", "layer scale"),
    ],
)
def test_unsupported_models_are_refused_with_the_reason(make, to, message):
    with pytest.raises(NotAViTError, match=message) as info:
        convert_vit(make(), to)
    assert "Only standard ViTs convert" in str(info.value)


def test_bad_targets_are_config_errors(tmp_path):
    hf = HFViT(tiny_hf_vit())
    with pytest.raises(ConfigError, match="unknown conversion target 'onnx'"):
        convert_vit(hf, "onnx")
    with pytest.raises(ConfigError, match="already a hf model"):
        convert_vit(hf, "hf")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        convert_checkpoint(tmp_path / "nowhere", "timm", tmp_path / "out")
    assert issubclass(NotAViTError, VitTransferError)


@torch.no_grad()
def test_cli_writes_a_loadable_folder(tmp_path, capsys):
    from vit_transfer.cli import main

    src = _hf_source(tmp_path / "hf")
    out = tmp_path / "timm"
    assert main(["convert", str(src), "--to", "timm", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote timm {FALLBACK_TIMM_ARCHITECTURE}" in printed and "verified" in printed
    assert (out / "model.safetensors").stat().st_size > 4 * 20_000  # ~25k float32 parameters
    reloaded = load_vit(out)
    assert reloaded.ecosystem == "timm" and reloaded.id2label == LABELS
    x = _batch((32, 32))
    assert_close(reloaded(x), _stock_hf(src)(pixel_values=x).logits, atol=1e-5, rtol=1e-5)

    assert main(["convert", str(src), "--to", "timm", "--output", str(out)]) == 2  # not empty
    assert "--overwrite" in capsys.readouterr().err


def _builtin_names():
    from vit_transfer.models.builtin import BUILTIN_MODELS

    return sorted(BUILTIN_MODELS)


NO_BUILTIN = [pytest.param("none", marks=pytest.mark.skip("no built-in checkpoint shipped yet"))]


@pytest.mark.parametrize("name", _builtin_names() or NO_BUILTIN)
@torch.no_grad()
def test_shipped_checkpoint_converts_to_timm_with_the_same_logits(name, tmp_path):
    from vit_transfer.models.builtin import builtin_path

    source = load_vit(name)
    if source.ecosystem != "hf":
        pytest.skip(f"{name} is not a transformers checkpoint")
    out = convert_checkpoint(name, "timm", tmp_path / "timm")
    x = _batch(source.image_size, n=8)
    expected = _stock_hf(builtin_path(name))(pixel_values=x).logits
    timm_net = _stock_timm(out)
    assert_close(timm_net(x), expected, atol=1e-4, rtol=1e-4)  # stock reload: timm's eps 1e-6
    assert (timm_net(x).argmax(-1) == expected.argmax(-1)).all()
    _set_eps(timm_net, json.loads((out / "config.json").read_text())[LAYER_NORM_EPS_KEY])
    assert_close(timm_net(x), expected, **TIGHT)
