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
