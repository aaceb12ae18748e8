"""load_vit / resize / heads / save across transformers and timm, checked against the stock code."""

import json

import pytest
import timm
import torch
from transformers import AutoModelForImageClassification

from vit_transfer import CheckpointError, ImageSizeError, NotAViTError, UnknownSourceError, load_vit
from vit_transfer.testing import save_tiny_hf_vit, save_tiny_timm_vit, tiny_hf_vit, tiny_timm_vit


def images(h, w, n=2, seed=1):
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --- HF ---------------------------------------------------------------------------------------
def test_hf_resize_matches_interpolate_pos_encoding(hf_vit_dir):
    reference = AutoModelForImageClassification.from_pretrained(hf_vit_dir).eval()
    x = images(64, 64)
    expected = reference(pixel_values=x, interpolate_pos_encoding=True).logits
    model = load_vit(hf_vit_dir, image_size=64, interpolation="transformers").eval()
    assert model.grid_size == (8, 8)
    assert model.model.config.image_size == 64
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(48, 48), (32, 56)])
def test_hf_resize_save_stock_reload(hf_vit_dir, tmp_path, size):
    model = load_vit(hf_vit_dir, image_size=size).eval()
    x = images(*size)
    logits = model(x)
    model.save(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()  # no flags
    torch.testing.assert_close(reloaded(pixel_values=x).logits, logits, rtol=0, atol=0)
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": size[0], "width": size[1]}
    assert processor["image_mean"] == [0.5, 0.5, 0.5]


def test_hf_pipeline_loads_saved_model(hf_vit_dir, tmp_path):
    from PIL import Image
    from transformers import pipeline

    model = load_vit(hf_vit_dir, image_size=48, num_labels=2, id2label={0: "cat", 1: "dog"})
    with torch.no_grad():
        model.model.classifier.bias.copy_(torch.tensor([0.0, 3.0]))
    model.save(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path))
    out = classify(Image.new("RGB", (100, 80), (120, 30, 200)))
    assert out[0]["label"] == "dog"
    assert out[0]["score"] == pytest.approx(torch.softmax(torch.tensor([0.0, 3.0]), 0)[1].item(), abs=1e-4)


@pytest.mark.parametrize("model_type,prefix", [("deit", 2), ("dinov2", 1), ("dinov2_with_registers", 5)])
def test_hf_families_keep_prefix_tokens_and_round_trip(tmp_path, model_type, prefix):
    src = save_tiny_hf_vit(tmp_path / "src", model_type=model_type)
    model = load_vit(src).eval()
    assert model.num_prefix_tokens == prefix
    table = model.pos_embed.detach().clone()
    model.resize(48)
    pos_prefix = model.num_pos_prefix_tokens
    assert torch.equal(model.pos_embed[:, :pos_prefix], table[:, :pos_prefix])
    x = images(48, 48)
    logits = model(x)
    model.save(tmp_path / "out")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(reloaded(pixel_values=x).logits, logits, rtol=0, atol=0)


def test_dinov2_matches_its_own_interpolation(tmp_path):
    """transformers' Dinov2 interpolates on the fly (float32, bicubic, no antialias); ours is persistent."""
    src = save_tiny_hf_vit(tmp_path / "src", model_type="dinov2")
    reference = AutoModelForImageClassification.from_pretrained(src).eval()
    x = images(48, 48)
    model = load_vit(src, image_size=48, interpolation="transformers").eval()
    # Dinov2 adds 0.1 to the target size (a legacy detail), so agreement is close, not exact
    torch.testing.assert_close(model(x), reference(pixel_values=x).logits, rtol=0, atol=5e-2)


def test_dinov2_rejects_non_square(tmp_path):
    src = save_tiny_hf_vit(tmp_path / "src", model_type="dinov2")
    with pytest.raises(ImageSizeError, match="square"):
        load_vit(src, image_size=(32, 48))


# --- timm -------------------------------------------------------------------------------------
def test_timm_resize_equals_timm_resampler(timm_vit_dir):
    from timm.layers import resample_abs_pos_embed

    model = load_vit(timm_vit_dir)
    table = model.pos_embed.detach().clone()
    model.resize((40, 56), interpolation="timm")
    expected = resample_abs_pos_embed(table, [5, 7], [4, 4], num_prefix_tokens=1, verbose=False)
    torch.testing.assert_close(model.pos_embed.detach(), expected, rtol=0, atol=1e-6)


def test_timm_resize_keeps_the_chosen_interpolation(timm_vit_dir, tmp_path):
    """timm's set_input_size updates the geometry (and PI-resizes the kernel); the table is ours, not timm's default."""
    model = load_vit(timm_vit_dir).eval()
    table = model.pos_embed.detach().clone()
    model.resize((48, 80), patch_size=16, interpolation="big_vision")
    grid = table[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(3, 5), mode="bilinear", align_corners=True)
    torch.testing.assert_close(model.pos_embed[:, 1:].detach(), expected.flatten(2).transpose(1, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.pos_embed[:, :1].detach(), table[:, :1], rtol=0, atol=0)
    assert model.patch_kernel.weight.shape[-2:] == (16, 16) and model.grid_size == (3, 5)
    x = images(48, 80)
    logits = model(x)
    model.save(tmp_path)
    reloaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    torch.testing.assert_close(reloaded(x), logits, rtol=0, atol=0)


@pytest.mark.parametrize("model_args", [{}, {"reg_tokens": 4, "no_embed_class": True}, {"class_token": False, "global_pool": "avg"}])
def test_timm_resize_save_stock_reload_non_square(tmp_path, model_args):
    save_tiny_timm_vit(tmp_path / "src", **model_args)
    model = load_vit(tmp_path / "src", image_size=(32, 48), num_labels=4).eval()
    with torch.no_grad():
        model.model.head.weight.normal_()
    x = images(32, 48)
    logits = model(x)
    model.save(tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["pretrained_cfg"]["input_size"] == [3, 32, 48]
    reloaded = timm.create_model(f"local-dir:{tmp_path / 'out'}", pretrained=True).eval()
    torch.testing.assert_close(reloaded(x), logits, rtol=0, atol=0)
    again = load_vit(tmp_path / "out").eval()
    assert again.image_size == (32, 48) and again.num_labels == 4
    torch.testing.assert_close(again(x), logits, rtol=0, atol=0)


def test_timm_register_tokens_not_in_table(tmp_path):
    save_tiny_timm_vit(tmp_path / "src", reg_tokens=4, no_embed_class=True)
    model = load_vit(tmp_path / "src")
    assert model.num_prefix_tokens == 5 and model.num_pos_prefix_tokens == 0
    model.resize(48)
    assert model.pos_embed.shape == (1, 36, 32)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_bare_weights_file(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=5).eval()
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    with pytest.raises(UnknownSourceError, match="architecture"):
        load_vit(path)
    model = load_vit(path, architecture="vit_tiny_patch16_224").eval()
    # the architecture's default is 224 px; the file's 4x4 grid (64 px) and 5 classes are kept
    assert model.image_size == (64, 64) and model.num_labels == 5
    x = images(64, 64)
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)


def test_timm_weights_file_with_config_beside_it(tmp_path):
    folder = save_tiny_timm_vit(tmp_path / "m", image_size=48)
    net = load_vit(folder).eval()
    model = load_vit(folder / "model.safetensors").eval()  # architecture and model_args from config.json
    x = images(48, 48)
    torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)


# --- heads ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_new_head_is_zero_initialised_with_labels(ecosystem, hf_vit_dir, timm_vit_dir, tmp_path):
    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    labels = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e"}
    model = load_vit(src, id2label=labels).eval()
    assert model.num_labels == 5 and model.id2label == labels
    logits = model(images(32, 32))
    assert logits.shape == (2, 5) and torch.count_nonzero(logits) == 0
    model.save(tmp_path)
    assert load_vit(tmp_path).id2label == labels


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("kind,pooling", [("mlp", "cls"), ("linear", "mean"), ("mlp", "cls+mean")])
def test_custom_heads_round_trip_through_load_vit(ecosystem, kind, pooling, hf_vit_dir, timm_vit_dir, tmp_path):
    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    model = load_vit(src, num_labels=3, head=kind, pooling=pooling, head_hidden_dim=16, head_init="trunc_normal").eval()
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_()
    x = images(32, 32)
    logits = model(x)
    assert logits.abs().sum() > 0
    model.save(tmp_path)
    again = load_vit(tmp_path).eval()
    assert again.head_spec == model.head_spec
    torch.testing.assert_close(again(x), logits, rtol=0, atol=0)


def test_pooling_changes_features(hf_vit_dir):
    model = load_vit(hf_vit_dir).eval()
    x = images(32, 32)
    cls, mean, both = (model.forward_features(x, p) for p in ("cls", "mean", "cls+mean"))
    assert cls.shape == (2, 32) and both.shape == (2, 64)
    torch.testing.assert_close(both, torch.cat([cls, mean], -1))
    tokens = model.forward_tokens(x)[0]
    torch.testing.assert_close(mean, tokens[:, 1:].mean(1))
    two = model.forward_features(x, "cls", last_n=2)
    assert two.shape == (2, 64)
    torch.testing.assert_close(two[:, 32:], cls)


# --- patch size -------------------------------------------------------------------------------
@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_patch_size_change_round_trips(ecosystem, hf_vit_dir, timm_vit_dir, tmp_path):
    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    model = load_vit(src, image_size=64, patch_size=16).eval()
    assert model.patch_size == (16, 16) and model.grid_size == (4, 4)
    assert model.patch_kernel.weight.shape[-2:] == (16, 16)
    x = images(64, 64)
    logits = model(x)
    model.save(tmp_path)
    torch.testing.assert_close(load_vit(tmp_path).eval()(x), logits, rtol=0, atol=0)


def test_pi_resize_preserves_patch_tokens_for_upsampled_input(timm_vit_dir):
    """FlexiViT: a patch upsampled 2x and embedded with the PI-resized kernel gives the same token."""
    model = load_vit(timm_vit_dir)
    kernel = model.patch_kernel.weight.detach().clone()
    model.resize(64, patch_size=16)
    patch = torch.randn(1, 3, 8, 8)
    big = torch.nn.functional.interpolate(patch, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
    before = (patch * kernel).sum(dim=(1, 2, 3))
    after = (big * model.patch_kernel.weight.detach()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


# --- errors -----------------------------------------------------------------------------------
def test_unknown_sources_are_named(tmp_path):
    with pytest.raises(UnknownSourceError, match="not_a_model_anywhere"):
        load_vit("not_a_model_anywhere")
    with pytest.raises(UnknownSourceError, match="no such file"):
        load_vit("./missing/checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownSourceError, match="config.json"):
        load_vit(tmp_path / "empty")
    with pytest.raises(UnknownSourceError, match="google/vit-does-not-exist"):
        load_vit("google/vit-does-not-exist")  # offline in tests: the Hub is unreachable


def test_not_a_vit(tmp_path):
    from transformers import ResNetConfig, ResNetForImageClassification

    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1])).save_pretrained(tmp_path / "hf")
    with pytest.raises(NotAViTError, match="resnet"):
        load_vit(tmp_path / "hf")
    from timm.models import save_for_hf

    save_for_hf(timm.create_model("resnet18", pretrained=False, num_classes=2), tmp_path / "timm", safe_serialization=True)
    with pytest.raises(NotAViTError, match="ResNet"):
        load_vit(tmp_path / "timm")


def test_image_size_not_divisible(hf_vit_dir):
    with pytest.raises(ImageSizeError, match=r"50x50 is not a multiple of the patch size 8x8.*48 or 56"):
        load_vit(hf_vit_dir, image_size=50)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_truncated_weights(ecosystem, tmp_path):
    folder = (save_tiny_hf_vit if ecosystem == "hf" else save_tiny_timm_vit)(tmp_path / "m")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_vit(folder)
    weights.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_vit(folder)


def test_corrupt_torch_file(tmp_path):
    path = tmp_path / "broken.pth"
    torch.save(tiny_timm_vit().state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_vit(path, architecture="vit_tiny_patch16_224")


def test_hf_model_without_classifier_head(tmp_path):
    """A backbone-only checkpoint (ViTModel, like google/vit-base-patch16-224-in21k) gets a new head."""
    tiny_hf_vit().vit.save_pretrained(tmp_path)
    model = load_vit(tmp_path, num_labels=7, image_size=48)
    assert model(images(48, 48)).shape == (2, 7)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_head_with_identical_labels_is_kept_unless_asked(ecosystem, hf_vit_dir, timm_vit_dir, tmp_path):
    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    labels = {0: "x", 1: "y"}
    model = load_vit(src, id2label=labels).eval()
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_()
    model.save(tmp_path)
    x = images(32, 32)
    kept = load_vit(tmp_path, id2label=labels).eval()
    torch.testing.assert_close(kept(x), model(x), rtol=0, atol=0)
    assert torch.count_nonzero(load_vit(tmp_path, id2label={0: "y", 1: "x"}).eval()(x)) == 0
    assert torch.count_nonzero(load_vit(tmp_path, id2label=labels, reuse_matching_head=False).eval()(x)) == 0


# --- attention kernel -------------------------------------------------------------------------
@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_attention_kernel_choice_keeps_the_numbers(ecosystem, hf_vit_dir, timm_vit_dir, tmp_path):
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.loading import auto_attention

    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    fused = load_vit(src).eval()
    plain = load_vit_from_config(ModelConfig(source=str(src), attention="eager")).eval()
    if ecosystem == "hf":
        assert fused.model.config._attn_implementation == "sdpa"
        assert plain.model.config._attn_implementation == "eager"
    else:
        flags = [m.fused_attn for m in plain.model.modules() if hasattr(m, "fused_attn")]
        assert flags and not any(flags)
    x = images(32, 32)
    with torch.no_grad():
        expected = fused.forward_features(x, "mean")
        assert expected.abs().sum() > 0
        torch.testing.assert_close(plain.forward_features(x, "mean"), expected, rtol=0, atol=1e-5)
    plain.save(tmp_path)  # a runtime choice: the saved checkpoint does not pin a kernel
    assert "eager" not in (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match="sdpa, eager"):
        plain.set_attention("flash")


# --- from-scratch control (reinitialize) ------------------------------------------------------
@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_reinitialized_mlp_head_trains_the_backbone(ecosystem, hf_vit_dir, timm_vit_dir):
    from dataclasses import replace

    """Only the head's last layer starts at zero: its first matrix is random, so after one step gradients reach
    the first matrix and the backbone (with both matrices at zero only the output bias ever learns)."""
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.loading import auto_attention

    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    cfg = ModelConfig(source=str(src), head="mlp", head_hidden_dim=16, pretrained=False)
    model = load_vit_from_config(cfg, num_labels=3, seed=1).train()  # the fixture itself was built at seed 0
    first_kernel = model.patch_kernel.weight.detach().clone()
    first, _, _, last = model.model.get_submodule(model.head_module_names()[0])
    assert first.weight.std() > 0.01 and torch.count_nonzero(last.weight) == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images(32, 32)), torch.tensor([0, 1])).backward()
        optimizer.step()
    assert first.weight.grad.abs().sum() > 0 and model.patch_kernel.weight.grad.abs().sum() > 0
    again, other = (load_vit_from_config(replace(cfg, **kw), num_labels=3, seed=1) for kw in ({}, {"pretrained": True}))
    assert torch.equal(again.patch_kernel.weight, first_kernel)  # the control is reproducible from its seed
    assert not torch.equal(other.patch_kernel.weight, first_kernel)


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_reinitialize_with_a_wider_head(ecosystem, hf_vit_dir, timm_vit_dir):
    """cls+mean doubles the head's input width; the random control keeps that head and its labels."""
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.loading import auto_attention

    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    pretrained = load_vit(src, id2label={0: "a", 1: "b"}, pooling="cls+mean")
    model = load_vit_from_config(ModelConfig(source=str(src), pooling="cls+mean", pretrained=False),
                                 id2label={0: "a", 1: "b"}).eval()
    assert model.head_spec == pretrained.head_spec and model.id2label == {0: "a", 1: "b"}
    assert not torch.equal(model.pos_embed, pretrained.pos_embed)
    x = images(32, 32)
    with torch.no_grad():
        features = model.forward_features(x, "cls+mean")
        head = model.model.get_submodule(model.head_module_names()[0])
        head.weight.normal_()
        torch.testing.assert_close(model(x), head(features), rtol=0, atol=1e-5)


# --- timm fc_norm -----------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["cls", "mean", "cls+mean"])
def test_timm_fc_norm_features_are_the_head_input(tmp_path, pooling):
    """A timm model built with fc_norm (its final norm after pooling): probe features = what the head reads."""
    save_tiny_timm_vit(tmp_path, fc_norm=True, global_pool="avg")
    model = load_vit(tmp_path, num_labels=3, pooling=pooling).eval()
    assert not isinstance(model.model.fc_norm, torch.nn.Identity)
    x = images(32, 32)
    with torch.no_grad():
        model.model.fc_norm.weight.uniform_(0.5, 2.0)
        model.model.fc_norm.bias.normal_()
        model.model.head.weight.normal_()
        features = model.forward_features(x, pooling)
        torch.testing.assert_close(model(x), model.model.head(features), rtol=0, atol=1e-5)
        if pooling == "cls+mean":  # each half is normed as the one-part pooling would be
            parts = [model.forward_features(x, p) for p in ("cls", "mean")]
            torch.testing.assert_close(features, torch.cat(parts, -1), rtol=0, atol=0)
        else:  # timm's own path: forward_head(pre_logits=True) with that pooling
            model.model.global_pool = {"cls": "token", "mean": "avg"}[pooling]
            expected = model.model.forward_head(model.model.forward_features(x), pre_logits=True)
            torch.testing.assert_close(features, expected, rtol=0, atol=1e-6)


# --- one builder for recipes ------------------------------------------------------------------
@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_recipe_builds_the_load_vit_model_and_records_the_original_size(ecosystem, hf_vit_dir, timm_vit_dir):
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.loading import auto_attention

    src = hf_vit_dir if ecosystem == "hf" else timm_vit_dir
    labels = {0: "a", 1: "b"}
    kwargs = dict(image_size=48, patch_size=16, interpolation="big_vision", head="mlp", head_hidden_dim=8,
                  pooling="mean", head_init="trunc_normal")
    torch.manual_seed(0)
    direct = load_vit(src, id2label=labels, **kwargs).eval()
    torch.manual_seed(0)
    built = load_vit_from_config(ModelConfig(source=str(src), **kwargs), id2label=labels).eval()
    direct.set_attention(auto_attention(direct))  # model.attention: auto, what the recipe builder applies
    assert built.image_size == (48, 48) and built.original_image_size == (32, 32) == direct.original_image_size
    x = images(48, 48)
    with torch.no_grad():
        assert built(x).abs().sum() > 0
        torch.testing.assert_close(built(x), direct(x), rtol=0, atol=0)


def test_scratch_recipe_takes_patch_size_and_head_options():
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.scratch import ArchitectureConfig

    arch = ArchitectureConfig(image_size=16, patch_size=4, hidden_size=16, depth=1, num_heads=2, mlp_dim=32)
    model = load_vit_from_config(ModelConfig(source="scratch", scratch=arch, patch_size=8, head="mlp"), num_labels=3)
    assert model.patch_size == (8, 8) and model.grid_size == (2, 2) and model.original_image_size == (16, 16)
    assert model.head_spec.kind == "mlp" and model(images(16, 16)).shape == (2, 3)


def test_auto_attention_is_eager_only_for_short_sequences_on_the_cpu(hf_vit_dir):
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config
    from vit_transfer.models.loading import EAGER_MAX_TOKENS, auto_attention

    short = load_vit(hf_vit_dir)  # 32 px, patch 8: 16 patches + the class token
    assert auto_attention(short, "cpu") == "eager" and auto_attention(short, "cuda") == "sdpa"
    side = 8 * int((EAGER_MAX_TOKENS ** 0.5) + 1)  # a grid past the limit
    long = load_vit(hf_vit_dir, image_size=side)
    assert long.num_prefix_tokens + long.grid_size[0] * long.grid_size[1] > EAGER_MAX_TOKENS
    assert auto_attention(long, "cpu") == "sdpa"
    expected = "sdpa" if torch.cuda.is_available() else "eager"
    assert load_vit_from_config(ModelConfig(source=str(hf_vit_dir))).model.config._attn_implementation == expected
    assert load_vit_from_config(ModelConfig(source=str(hf_vit_dir), attention="sdpa")).model.config._attn_implementation == "sdpa"
