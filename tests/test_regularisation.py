"""model.drop_path_rate (stochastic depth) and model.patch_drop_rate (timm token dropping): training only."""

from __future__ import annotations

import pytest
import torch

from vit_transfer.config import ModelConfig
from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit, load_vit_from_config
from vit_transfer.testing import save_tiny_hf_vit


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    return save_tiny_hf_vit(tmp_path_factory.mktemp("dinov2"), model_type="dinov2")


def _sources(request):
    return {"timm": str(request.getfixturevalue("timm_vit_dir")), "dinov2": str(request.getfixturevalue("dinov2_dir"))}


@pytest.mark.parametrize("kind", ["timm", "dinov2"])
def test_drop_path_changes_training_not_eval(request, kind):
    source = _sources(request)[kind]
    torch.manual_seed(0)
    plain = load_vit(source, num_labels=3, head_init="trunc_normal")
    torch.manual_seed(0)  # the same random head
    model = load_vit_from_config(ModelConfig(source=source, head_init="trunc_normal", drop_path_rate=0.5),
                                 num_labels=3)
    x = torch.randn(8, 3, *model.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x))  # eval: every residual branch kept
        torch.manual_seed(1)
        first = model.train()(x)
        second = model(x)
        torch.testing.assert_close(plain.train()(x), plain(x))  # the plain model is deterministic in training
    assert not torch.allclose(first, second)  # stochastic depth draws new branches each call
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates == sorted(rates) and max(rates) == pytest.approx(0.5)  # linear in depth up to the rate


def test_drop_path_zero_is_the_plain_model(timm_vit_dir):
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    a = load_vit(str(timm_vit_dir), num_labels=3, head_init="trunc_normal").train()
    torch.manual_seed(0)
    b = load_vit(str(timm_vit_dir), num_labels=3, head_init="trunc_normal")
    b.set_drop_path(0.0)
    with torch.no_grad():
        torch.testing.assert_close(b.train()(x), a(x))
    assert not [m for m in b.modules() if type(m).__name__ == "DropPath"]


def test_drop_path_on_a_family_without_it_is_a_clear_error(hf_vit_dir):
    with pytest.raises(ConfigError, match="drop_path_rate.*ViTForImageClassification.*no stochastic-depth"):
        load_vit_from_config(ModelConfig(source=str(hf_vit_dir), drop_path_rate=0.1), num_labels=3)


def test_patch_dropout_keeps_a_share_of_patch_tokens_in_training(timm_vit_dir, hf_vit_dir):
    model = load_vit_from_config(ModelConfig(source=str(timm_vit_dir), patch_drop_rate=0.5), num_labels=3)
    seen = []
    model.model.blocks[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    x = torch.randn(2, 3, *model.image_size)
    patches = model.grid_size[0] * model.grid_size[1]
    with torch.no_grad():
        model.train()(x)
        model.eval()(x)
    assert seen == [model.num_prefix_tokens + patches // 2, model.num_prefix_tokens + patches]
    with pytest.raises(ConfigError, match="patch_drop_rate.*timm"):
        load_vit_from_config(ModelConfig(source=str(hf_vit_dir), patch_drop_rate=0.5), num_labels=3)
