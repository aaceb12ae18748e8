"""model.gradient_checkpointing: the same gradients as storing activations, with LoRA and a frozen backbone too."""

from __future__ import annotations

import pytest
import torch

from vit_transfer.adapters.lora import LoraSettings, apply_lora
from vit_transfer.config import ModelConfig
from vit_transfer.models import load_vit, load_vit_from_config
from vit_transfer.training import prepare_method


def _grads(source: str, method: str, checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = load_vit(source, num_labels=3, head_init="trunc_normal")
    if method == "lora":
        apply_lora(model, LoraSettings(r=4, alpha=8))
        with torch.no_grad():  # lora_B starts at zero: give it weights so gradients reach lora_A too
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    else:
        prepare_method(model, method)
    model.set_gradient_checkpointing(checkpointing)
    model.train()
    x = torch.randn(4, 3, *model.image_size, generator=torch.Generator().manual_seed(1))
    model(x).logsumexp(-1).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
@pytest.mark.parametrize("method", ["full", "head", "lora"])
def test_checkpointed_gradients_equal_stored_ones(request, ecosystem, method):
    source = str(request.getfixturevalue("hf_vit_dir" if ecosystem == "hf" else "timm_vit_dir"))
    plain, checkpointed = _grads(source, method, False), _grads(source, method, True)
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    assert any(g.abs().max() > 0 for g in plain.values())


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_checkpointing_really_recomputes_the_blocks(request, ecosystem):
    """Recipe key model.gradient_checkpointing: blocks run twice per training step (forward, then again in
    backward); switched off, once."""
    source = str(request.getfixturevalue("hf_vit_dir" if ecosystem == "hf" else "timm_vit_dir"))
    model = load_vit_from_config(ModelConfig(source=source, gradient_checkpointing=True), num_labels=3)
    # a module inside the block: the recompute calls the block's forward, not its hooks
    inner = model.model.vit.layers[0].attention if ecosystem == "hf" else model.model.blocks[0].attn
    calls = []
    inner.register_forward_hook(lambda *args: calls.append(1))
    model.train()
    model(torch.randn(2, 3, *model.image_size)).sum().backward()
    assert len(calls) == 2
    model.set_gradient_checkpointing(False)
    calls.clear()
    model(torch.randn(2, 3, *model.image_size)).sum().backward()
    assert len(calls) == 1
