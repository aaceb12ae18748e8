"""Where a library ships the helper, vit-transfer uses it: repo ids as the Hub validates them, size pairs as timm
builds them, fused kernels as torch's optimisers report them, adapter keys by peft's own tuner prefixes, and no
private names imported from any of them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import vit_transfer

LIBRARIES = ("torch", "torchvision", "transformers", "timm", "peft", "accelerate", "huggingface_hub", "datasets",
             "safetensors")


# --- repo ids ----------------------------------------------------------------------------------
@pytest.mark.parametrize("repo_id", ["me/a--b", "me/a..b", "me/model.git", "me/" + "x" * 100, "me/-x", "a/b/c"])
def test_push_rejects_what_the_hub_rejects_naming_the_id(repo_id, tmp_path):
    from vit_transfer.hub import push_run
    from vit_transfer.hub.errors import HubError

    with pytest.raises(HubError, match="not valid") as caught:
        push_run(tmp_path, repo_id, dry_run_dir=tmp_path / "up")
    assert repr(repo_id) in str(caught.value)


def test_card_links_only_valid_hub_ids():
    from vit_transfer.hub.card import describe_dataset, hub_model_id

    assert hub_model_id("google/vit-base-patch16-224") == "google/vit-base-patch16-224"
    assert hub_model_id("google/vit--base") is None and hub_model_id("me/a..b") is None
    assert describe_dataset("uoft-cs/cifar10")["hub"] and describe_dataset("cifar10")["hub"]
    assert not describe_dataset("me/a--b")["hub"]


# --- size pairs --------------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [(32, (32, 32)), ([32, 48], (32, 48)), ((32, 48), (32, 48)),
                                            (np.array([32, 48]), (32, 48)), (torch.Size([16, 8]), (16, 8)),
                                            (np.int64(7), (7, 7))])
def test_to_pair_takes_what_timm_to_2tuple_takes(value, expected):
    from vit_transfer.models.base import to_pair

    assert to_pair(value) == expected and all(type(v) is int for v in to_pair(value))


@pytest.mark.parametrize("value", [[1, 2, 3], [], "32x32"])
def test_to_pair_names_an_unusable_size(value):
    from vit_transfer.errors import ImageSizeError
    from vit_transfer.models.base import to_pair

    with pytest.raises(ImageSizeError, match="height, width"):
        to_pair(value)


# --- fused optimiser kernels ------------------------------------------------------------------------
def test_fused_support_is_what_the_optimisers_accept():
    from vit_transfer.training.optim import fused_supported

    assert fused_supported("cpu")  # torch >= 2.4 (the floor) has fused SGD and AdamW on the CPU
    assert not fused_supported("meta")
    weight = torch.zeros(1, device="meta", requires_grad=True)
    weight.grad = torch.zeros_like(weight)
    with pytest.raises(RuntimeError, match="fused"):  # the oracle: torch itself refuses a fused step there
        torch.optim.SGD([weight], lr=0.1, fused=True).step()


# --- peft adapter keys ------------------------------------------------------------------------
def _weights(folder: Path, keys: list[str]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "vit"}')
    save_file({k: torch.zeros(1) for k in keys}, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("key", ["vit.encoder.layer.0.attention.q_proj.lora_A.default.weight",
                                 "vit.encoder.layer.0.attention.q_proj.base_layer.weight",
                                 "classifier.modules_to_save.default.weight",
                                 "blocks.0.attn.qkv.vblora_logits_A.default",
                                 "blocks.0.attn.qkv.hra_u.default",
                                 "blocks.0.mlp.fc1.lokr_w1.default"])
def test_unmerged_peft_weights_are_not_a_plain_model(tmp_path, key):
    from vit_transfer.runs.folder import model_problem

    problem = model_problem(_weights(tmp_path / "m", ["vit.embeddings.cls_token", key]))
    assert problem is not None and "unmerged peft" in problem


def test_every_peft_tuner_prefix_marks_adapter_keys():
    import peft.mapping

    from vit_transfer.runs.folder import peft_key_prefixes

    shipped = getattr(peft.mapping, "PEFT_TYPE_TO_PREFIX_MAPPING", None)
    tuners = peft.mapping.PEFT_TYPE_TO_TUNER_MAPPING.values()
    # peft before the mapping: each tuner class's prefix (X-LoRA, a mixture of LoRAs, has none of its own)
    expected = set(shipped.values()) if shipped else {t.prefix for t in tuners if getattr(t, "prefix", None)}
    assert {"lora_", "hada_", "lokr_", "ia3_", "oft_", "boft_"} <= expected <= set(peft_key_prefixes())


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_plain_models_are_not_taken_for_peft_weights(bases, ecosystem):
    from vit_transfer.runs.folder import model_problem

    assert model_problem(Path(bases[ecosystem])) is None


# --- no private imports -------------------------------------------------------------------------
def test_no_private_names_are_imported_from_the_libraries():
    package = Path(vit_transfer.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES:
                parts = node.module.split(".") + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                parts = [p for alias in node.names if alias.name.split(".")[0] in LIBRARIES
                         for p in alias.name.split(".")]
            else:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not found, f"private library imports: {found}"
