"""SSF: only scales, shifts and head train; the merged model is a stock ViT with the same logits."""

import pytest
import torch
from torch import nn

from vit_transfer.adapters.ssf import ScaleShift, apply_ssf, merge_ssf
from vit_transfer.models import load_vit
from vit_transfer.testing import save_tiny_hf_vit, save_tiny_timm_vit


@pytest.fixture(params=["hf", "timm", "timm-no-qkv-bias"])
def model(request, tmp_path):
    if request.param == "hf":
        source = save_tiny_hf_vit(tmp_path / "m")
    else:
        source = save_tiny_timm_vit(tmp_path / "m", qkv_bias=request.param == "timm")
    torch.manual_seed(0)
    return load_vit(source, num_labels=3)


def test_only_scales_shifts_and_head_train(model):
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    layers = apply_ssf(model)
    wrapped = [m for m in model.modules() if isinstance(m, ScaleShift)]
    assert len(wrapped) == len(layers) > 0
    linears = sum(isinstance(m.module, nn.Linear) for m in wrapped)
    norms = sum(isinstance(m.module, nn.LayerNorm) for m in wrapped)
    assert linears >= 8 and norms >= 5  # 2 blocks x (q, k, v / qkv, proj, fc1, fc2), 2 norms each + the final
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    heads = {n for n, p in model.named_parameters() if any(p is q for q in model.head_parameters())}
    assert heads and heads <= trainable
    assert all(n.endswith((".scale", ".shift")) for n in trainable - heads)
    expected = sum(m.scale.numel() + (m.shift.numel() if m.shift is not None else 0) for m in wrapped)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trained == expected + sum(p.numel() for p in model.head_parameters())
    # one optimiser step moves the trainable parameters only
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(torch.randn(4, 3, 32, 32)).logsumexp(-1).mean().backward()
    opt.step()
    after = dict(model.named_parameters())
    for name, before in frozen_before.items():
        live = next(p for n, p in after.items() if n == name or n.replace(".module.", ".") == name)
        assert torch.equal(live, before) or name in {n.replace(".module.", ".") for n in heads}, name
    assert any(not torch.equal(m.scale, torch.ones_like(m.scale)) for m in wrapped)


def test_merged_model_equals_the_ssf_model_and_reloads_as_a_stock_checkpoint(model, tmp_path):
    apply_ssf(model)
    with torch.no_grad():  # trained-looking scales and shifts, far from the identity
        for m in model.modules():
            if isinstance(m, ScaleShift):
                m.scale.normal_(1.0, 0.3)
                if m.shift is not None:
                    m.shift.normal_(0.0, 0.3)
        for p in model.head_parameters():
            p.normal_(0, 0.5)
    model.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    assert merge_ssf(model) > 0
    assert not any(isinstance(m, ScaleShift) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
    model.save(tmp_path / "merged")
    reloaded = load_vit(tmp_path / "merged").eval()
    assert set(reloaded.state_dict()) == set(model.state_dict())  # the stock architecture, no extra tensors
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), want, atol=1e-5, rtol=1e-5)
