"""VPT: prompts join the sequence after the prefix tokens; only they and the head train; the exports
(timm register tokens, or the prompts file load_vit re-applies) give the trained model's logits."""

import copy

import pytest
import torch

from vit_transfer.adapters.vpt import PROMPTS_FILE, VPTSettings, apply_vpt, prompts_to_registers, save_prompts
from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit
from vit_transfer.testing import save_tiny_hf_vit, save_tiny_timm_vit

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def build(kind, tmp_path, pooling="cls"):
    if kind == "hf":
        source = save_tiny_hf_vit(tmp_path / "m")
    elif kind == "deit":
        source = save_tiny_hf_vit(tmp_path / "m", model_type="deit")
    else:
        source = save_tiny_timm_vit(tmp_path / "m", no_embed_class=kind == "timm-no-embed-class")
    torch.manual_seed(0)
    model = load_vit(source, num_labels=3, pooling=pooling, head_init="trunc_normal").eval()
    return model


def sequence_length(model, x=X):
    """Tokens entering the last block, read by a hook."""
    seen = []
    _, blocks = model.token_sites()
    h = blocks[-1].register_forward_pre_hook(lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).shape[1]),
                                             with_kwargs=True)
    with torch.no_grad():
        model(x)
    h.remove()
    return seen[0]


@pytest.mark.parametrize("kind", ["hf", "deit", "timm"])
@pytest.mark.parametrize("deep", [False, True])
def test_prompts_train_alone_with_the_head(kind, deep, tmp_path):
    model = build(kind, tmp_path)
    before_len, prefix = sequence_length(model), model.num_prefix_tokens
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not any(p is q for q in model.head_parameters())}
    prompts = apply_vpt(model, VPTSettings(tokens=4, deep=deep))
    assert sequence_length(model) == before_len + 4 and model.num_prefix_tokens == prefix + 4
    layers = len(model.token_sites()[1]) if deep else 1
    assert model.prompts.tokens.shape == (layers, 4, model.embed_dim)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = {n for n, p in model.named_parameters() if any(p is q for q in model.head_parameters())}
    assert trainable == heads | {"prompts.tokens"}
    assert prompts is model.prompts
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trained == prompts.tokens.numel() + sum(p.numel() for p in model.head_parameters())
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model(X).logsumexp(-1).mean().backward()
    grad = model.prompts.tokens.grad
    assert grad is not None and bool((grad.abs().sum(dim=(1, 2)) > 0).all())  # every layer's prompts matter
    opt.step()
    now = dict(model.named_parameters())
    assert all(torch.equal(now[n], p) for n, p in frozen.items())


def test_deep_prompts_replace_each_blocks_prompt_positions(tmp_path):
    model = build("timm", tmp_path)
    apply_vpt(model, VPTSettings(tokens=2, deep=True))
    start = model.prompts.start
    seen = []
    blocks = model.token_sites()[1]
    hooks = [b.register_forward_pre_hook(lambda m, a, k: seen.append(a[0][:, start:start + 2].detach().clone()),
                                         with_kwargs=True) for b in blocks]
    # registered after the prompt hooks: they see the replaced input
    with torch.no_grad():
        model(X)
    for h in hooks:
        h.remove()
    for layer, tokens in enumerate(seen):
        torch.testing.assert_close(tokens, model.prompts.tokens[layer].expand(3, -1, -1))


@pytest.mark.parametrize("kind", ["timm", "timm-no-embed-class"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_shallow_timm_prompts_export_as_register_tokens(kind, pooling, tmp_path):
    model = build(kind, tmp_path, pooling)
    apply_vpt(model, VPTSettings(tokens=3))
    with torch.no_grad():
        model.prompts.tokens.normal_(0, 1.0)
        want = model(X)
        ema = copy.deepcopy(model)  # timm's EMA deep-copies the model: its hooks must use its own prompts
        ema.prompts.tokens.zero_()
        assert not torch.allclose(ema(X), want)
        torch.testing.assert_close(model(X), want)
    assert prompts_to_registers(model)
    assert model.model.num_reg_tokens == 3 and model.num_prompt_tokens == 0 and model.num_prefix_tokens == 4
    with torch.no_grad():
        torch.testing.assert_close(model(X), want, atol=1e-5, rtol=1e-5)
    model.save(tmp_path / "export")
    assert not (tmp_path / "export" / PROMPTS_FILE).exists()
    import timm

    stock = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True).eval()  # timm's own loader, no vit-transfer
    assert stock.num_reg_tokens == 3
    reloaded = load_vit(tmp_path / "export").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(X), want, atol=1e-5, rtol=1e-5)
        if pooling == "cls":
            torch.testing.assert_close(stock(reloaded.prepare_pixels(X)), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, deep", [("hf", False), ("hf", True), ("timm", True)])
def test_other_prompts_travel_in_a_file_that_load_vit_reapplies(kind, deep, tmp_path):
    model = build(kind, tmp_path, "mean")
    apply_vpt(model, VPTSettings(tokens=2, deep=deep))
    with torch.no_grad():
        model.prompts.tokens.normal_(0, 1.0)
        want = model(X)
    assert not prompts_to_registers(model)
    model.save(tmp_path / "export")
    save_prompts(model, tmp_path / "export")
    reloaded = load_vit(tmp_path / "export").eval()
    assert reloaded.num_prompt_tokens == 2 and not reloaded.prompts.tokens.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(reloaded(X), want, atol=1e-5, rtol=1e-5)


def test_tokens_are_checked_where_the_recipe_is_read():
    with pytest.raises(ConfigError, match="vpt.tokens"):
        VPTSettings(tokens=0)
