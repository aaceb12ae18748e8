"""model.scratch.pos_embed: each choice starts as it should and stays so under the project's optimiser."""

import pytest
import torch

from vit_transfer.errors import ConfigError
from vit_transfer.models.scratch import ArchitectureConfig, create_vit
from vit_transfer.training.config import OptimConfig
from vit_transfer.training.optim import build_optimizer

TINY = dict(image_size=16, patch_size=4, hidden_size=16, depth=1, num_heads=2, mlp_dim=32)  # 4x4 grid


def trained(kind, optimizer="adamw", steps=3):
    """A scratch model and its position table before and after a few optimiser steps."""
    model = create_vit(ArchitectureConfig(pos_embed=kind, **TINY), num_labels=3, seed=0)
    with torch.no_grad():
        model.model.classifier.weight.normal_()  # a zero head passes no gradient to the table
    before = model.pos_embed.detach().clone()
    opt = build_optimizer(model, OptimConfig(name=optimizer, lr=0.05, weight_decay=0.1))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16, generator=g)),
                                                 torch.tensor([0, 1, 2, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, before, model.pos_embed.detach()


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_none_is_zero_and_stays_zero(optimizer):
    model, before, after = trained("none", optimizer)
    assert before.abs().max() == 0 and after.abs().max() == 0
    assert model.model.vit.embeddings.cls_token.grad is not None  # the rest trains


def test_sincos_2d_is_timms_table_and_stays_fixed():
    from timm.layers import build_sincos2d_pos_embed

    _, before, after = trained("sincos_2d")
    assert torch.equal(before[0, 0], torch.zeros(16))  # class row
    torch.testing.assert_close(before[0, 1:], build_sincos2d_pos_embed([4, 4], 16))
    # patch (r, c) = (2, 3), row-major; width = [sin r*f, sin c*f, cos r*f, cos c*f], first frequency f = 1
    patch = before[0, 1 + 2 * 4 + 3]
    torch.testing.assert_close(patch[[0, 4, 8, 12]], torch.tensor([2.0, 3.0, 2.0, 3.0]).sin().where(
        torch.tensor([True, True, False, False]), torch.tensor([2.0, 3.0, 2.0, 3.0]).cos()))
    assert torch.equal(after, before)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_learned_2d_trains_and_stays_factorised(optimizer):
    _, before, after = trained("learned_2d", optimizer)
    for table in (before, after):
        patches = table[0, 1:].reshape(4, 4, 16)
        assert torch.equal(patches[:, :, :8], patches[:, :1, :8].expand(4, 4, 8))  # first half: per grid row
        assert torch.equal(patches[:, :, 8:], patches[:1, :, 8:].expand(4, 4, 8))  # second half: per column
    assert (after - before)[0, 1:].abs().max() > 1e-3
    assert len({tuple(r.tolist()) for r in before[0, 1:].reshape(4, 4, 16)[:, 0, :8]}) == 4  # rows differ


def test_learned_is_free():
    _, before, after = trained("learned")
    patches = (after - before)[0, 1:].reshape(4, 4, 16)
    assert patches.abs().max() > 1e-3
    assert not torch.equal(patches[:, :, :8], patches[:, :1, :8].expand(4, 4, 8))


def test_bad_choices_name_the_key():
    with pytest.raises(ConfigError, match="model.scratch.pos_embed"):
        ArchitectureConfig(pos_embed="rope", **TINY)
    with pytest.raises(ConfigError, match="divisible by 4"):
        ArchitectureConfig(pos_embed="sincos_2d", **{**TINY, "hidden_size": 18, "num_heads": 2})


def test_recipe_override_reaches_the_model(tmp_path):
    from vit_transfer.config import load_recipe
    from vit_transfer.models.loading import load_vit_from_config
    from vit_transfer.training import TrainRecipe

    recipe = load_recipe(None, ["model.source=scratch", "model.scratch.pos_embed=sincos_2d",
                                "model.scratch.hidden_size=16", "model.scratch.num_heads=2", "model.scratch.depth=1",
                                "model.scratch.mlp_dim=32"], TrainRecipe)
    model = load_vit_from_config(recipe.model, num_labels=3)
    assert model.pos_embed[0, 1:].std() > 0.5  # sin-cos values, not the 0.02 random start
    saved = model.save(tmp_path / "m")
    from vit_transfer import load_vit

    torch.testing.assert_close(load_vit(str(saved)).pos_embed, model.pos_embed.detach())


@pytest.mark.parametrize("kind", ["learned_2d", "sincos_2d"])
def test_the_training_loop_keeps_the_choice_and_saves_a_stock_table(tmp_path, image_folder, kind):
    from vit_transfer import load_vit
    from vit_transfer.config import load_recipe
    from vit_transfer.training import TrainRecipe, train

    scratch = ["model.source=scratch", f"model.scratch.pos_embed={kind}", "model.scratch.image_size=16",
               "model.scratch.patch_size=4", "model.scratch.hidden_size=16", "model.scratch.num_heads=2",
               "model.scratch.depth=1", "model.scratch.mlp_dim=32"]
    recipe = load_recipe(None, scratch + [
        f"data.source={image_folder}", "data.num_workers=0", "augment.crop=resize", "augment.hflip=false",
        "optim.name=adamw", "optim.lr=0.05", "optim.weight_decay=0.1", "train.max_steps=4", "train.batch_size=8",
        "schedule.warmup_steps=1", "model.head_init=trunc_normal", f"output.dir={tmp_path / 'run'}",
        "output.log_with=none"], TrainRecipe)
    from vit_transfer.models.loading import load_vit_from_config

    start = load_vit_from_config(recipe.model, num_labels=3).pos_embed.detach().clone()  # same seed, same start
    train(recipe)
    table = load_vit(str(tmp_path / "run" / "model")).pos_embed.detach()  # reloads as a plain ViT
    if kind == "sincos_2d":
        assert torch.equal(table, start)
    else:
        patches = table[0, 1:].reshape(4, 4, 16)
        assert torch.equal(patches[:, :, :8], patches[:, :1, :8].expand(4, 4, 8))
        assert torch.equal(patches[:, :, 8:], patches[:1, :, 8:].expand(4, 4, 8))
        assert (table - start).abs().max() > 1e-3


# --- relative: a learned 2-D relative position bias per head in each block, no absolute table -----------------
def relative_model(bias_std: float = 0.0, seed: int = 0):
    model = create_vit(ArchitectureConfig(pos_embed="relative", **{**TINY, "depth": 2}), num_labels=3, seed=seed)
    model.set_attention("eager")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "relative_position_bias_table" in name:
                assert param.abs().max() == 0  # BEiT's start: zero bias
                param.copy_(torch.randn(param.shape, generator=g) * bias_std)
    return model.eval()


def permute_patches(images: torch.Tensor, order: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """The image whose patch i (row-major) is ``images``' patch ``order[i]``."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    patches = images.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, patch, patch)
    patches = patches[:, order].reshape(b, gh, gw, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, c, h, w)


def permuted_outputs(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    order = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens = model.forward_tokens(images)[0]
        moved = model.forward_tokens(permute_patches(images, order))[0]
    return tokens, moved, order


def test_relative_has_no_absolute_table_and_is_beit_with_a_bias_per_block_and_head():
    model = relative_model()
    assert model.pos_embed is None
    tables = [p for n, p in model.named_parameters() if "relative_position_bias_table" in n]
    assert [tuple(t.shape) for t in tables] == [((2 * 4 - 1) ** 2 + 3, 2)] * 2  # 7x7 offsets + 3 class entries, 2 heads


@pytest.mark.parametrize("kind", ["relative", "none"])
def test_zero_bias_without_a_table_is_permutation_equivariant_over_patches(kind):
    model = relative_model() if kind == "relative" else create_vit(
        ArchitectureConfig(pos_embed="none", **TINY), num_labels=3).eval()
    tokens, moved, order = permuted_outputs(model)
    torch.testing.assert_close(moved[:, 1:], tokens[:, 1:][:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(moved[:, 0], tokens[:, 0], atol=1e-5, rtol=1e-5)  # the class token: invariant
    assert (tokens[:, 1:][:, order] - tokens[:, 1:]).abs().max() > 0.1  # the permutation really moves tokens


def test_a_nonzero_relative_bias_breaks_permutation_equivariance():
    tokens, moved, order = permuted_outputs(relative_model(bias_std=1.0))
    assert (moved[:, 1:] - tokens[:, 1:][:, order]).abs().max() > 0.05
    assert (moved[:, 0] - tokens[:, 0]).abs().max() > 0.01


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_relative_saves_and_reloads_through_load_vit_with_the_same_logits(tmp_path, attention):
    from vit_transfer import load_vit

    model = relative_model(bias_std=1.0)
    with torch.no_grad():
        model.model.classifier.weight.normal_()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(images)
    reloaded = load_vit(str(model.save(tmp_path / "m"))).eval()
    reloaded.set_attention(attention)
    assert reloaded.pos_embed is None
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), expected, atol=1e-5, rtol=1e-5)
        assert (relative_model(bias_std=0.0).eval()(images) - expected).abs().max() > 1e-3  # the bias matters


def test_relative_refuses_a_resize_by_name():
    from vit_transfer.errors import ImageSizeError

    with pytest.raises(ImageSizeError, match="no absolute position table"):
        relative_model().resize(20)


def test_the_training_loop_trains_the_relative_bias_and_saves_it(tmp_path, image_folder):
    from vit_transfer import load_vit
    from vit_transfer.config import load_recipe
    from vit_transfer.training import TrainRecipe, train

    recipe = load_recipe(None, [
        "model.source=scratch", "model.scratch.pos_embed=relative", "model.scratch.image_size=16",
        "model.scratch.patch_size=4", "model.scratch.hidden_size=16", "model.scratch.num_heads=2",
        "model.scratch.depth=1", "model.scratch.mlp_dim=32", f"data.source={image_folder}", "data.num_workers=0",
        "augment.crop=resize", "augment.hflip=false", "optim.name=adamw", "optim.lr=0.05", "train.max_steps=4",
        "train.batch_size=8", "schedule.warmup_steps=1", "model.head_init=trunc_normal",
        f"output.dir={tmp_path / 'run'}", "output.log_with=none"], TrainRecipe)
    result = train(recipe)
    reloaded = load_vit(str(tmp_path / "run" / "model"))
    assert type(reloaded.model).__name__ == "BeitForImageClassification" and reloaded.pos_embed is None
    bias = reloaded.model.beit.layers[0].relative_position_bias.relative_position_bias_table
    assert bias.abs().max() > 1e-3  # trained away from its zero start
    torch.testing.assert_close(bias, result.model.model.beit.layers[0].relative_position_bias.relative_position_bias_table)


def test_a_mean_pooled_beit_is_refused_by_name(tmp_path):
    from transformers import BeitForImageClassification

    from vit_transfer import load_vit
    from vit_transfer.errors import NotAViTError
    from vit_transfer.models.pos_embed_kinds import relative_bias_config

    config = relative_bias_config(relative_model().model.config)
    config.use_mean_pooling = True
    BeitForImageClassification(config).save_pretrained(tmp_path / "beit")
    with pytest.raises(NotAViTError, match="use_mean_pooling"):
        load_vit(str(tmp_path / "beit"))


def test_inspect_says_a_relative_model_has_no_table_and_measures_the_bias_in_its_attention(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from vit_transfer.diagnostics import inspect_model

    model = relative_model()
    with torch.no_grad():  # offset (0, 0) of a 4x4 grid is entry (0 + 3) * 7 + (0 + 3) = 24: a patch sees itself
        for block in model.model.beit.layers:
            block.relative_position_bias.relative_position_bias_table[24] = 40.0
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(2)]
    result = inspect_model(model, images, tmp_path / "out")
    entry = json.loads((tmp_path / "out" / "inspect.json").read_text())["models"]["model"]
    assert "no absolute position table" in entry["pos_embed_similarity"]["absent"]
    assert (tmp_path / "out" / "pos_embed_similarity.png").is_file()
    distances = np.asarray(result["models"]["model"]["attention_distance"]["per_head"])
    assert distances.shape == (2, 2) and distances.max() < 0.01  # every patch attends to itself: distance 0
