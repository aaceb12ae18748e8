"""vit_transfer.diagnostics against independent oracles: hand-computed distances, the rollout formula,
the same weights in both ecosystems, LoRA at its identity init, and the model's attention setting kept."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from vit_transfer import load_vit
from vit_transfer.diagnostics import (
    attention_rollout,
    attention_state,
    capture_attention,
    discard_weakest,
    inspect_model,
    locality,
    mean_attention_distance,
    model_attention_distance,
    model_pos_embed_similarity,
    pos_embed_similarity,
)
from vit_transfer.models.hf_vit import HFViT
from vit_transfer.models.timm_vit import TimmViT
from vit_transfer.testing import tiny_hf_vit, tiny_timm_vit


def random_attention(batch, heads, tokens, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, tokens, tokens, generator=g).softmax(-1)


def test_uniform_attention_gives_the_mean_pairwise_patch_distance():
    grid, patch, prefix = (3, 4), (8, 4), 2  # non-square grid and patch
    n = prefix + grid[0] * grid[1]
    attention = torch.full((1, 2, n, n), 1.0 / n)  # prefix keys take weight too: renormalisation removes it
    centres = [(r * patch[0], c * patch[1]) for r in range(grid[0]) for c in range(grid[1])]
    pairs = [math.dist(a, b) for a, b in itertools.product(centres, centres)]
    expected = sum(pairs) / len(pairs)
    got = mean_attention_distance(attention, grid, patch, prefix)
    assert got.shape == (1, 2)
    assert torch.allclose(got, torch.full((1, 2), expected, dtype=got.dtype), atol=1e-9)


def test_identity_attention_gives_zero_distance():
    grid, prefix = (2, 5), 1
    n = prefix + 10
    attention = torch.eye(n).expand(3, 2, n, n)
    assert mean_attention_distance(attention, grid, (16, 16), prefix).abs().max() == 0


def test_attention_to_prefix_tokens_only_is_renormalised_over_patches():
    # every query puts 0.9 on the class token and 0.1 on its right neighbour (or itself at the edge)
    grid, prefix = (1, 3), 1
    attention = torch.zeros(1, 1, 4, 4)
    attention[..., :, 0] = 0.9
    attention[0, 0, 1, 2] = attention[0, 0, 2, 3] = attention[0, 0, 3, 3] = 0.1
    got = mean_attention_distance(attention, grid, (8, 8), prefix)
    assert got.item() == pytest.approx((8 + 8 + 0) / 3)


def rollout_by_hand(attentions, prefix, fusion, query):
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[fusion]
    joint = None
    for a in attentions:
        a = fuse(a.numpy().astype(np.float64), axis=1)
        a = (a + np.eye(a.shape[-1])) / 2
        a = a / a.sum(-1, keepdims=True)
        joint = a if joint is None else np.einsum("bij,bjk->bik", a, joint)
    rows = joint[:, 0] if query == "cls" else joint[:, :prefix].mean(1)
    return rows[:, prefix:]


@pytest.mark.parametrize("fusion,query,prefix", [("mean", "cls", 1), ("max", "cls", 2), ("min", "prefix", 5)])
def test_rollout_on_two_blocks_equals_the_formula(fusion, query, prefix):
    grid = (2, 3)
    n = prefix + 6
    attentions = [random_attention(2, 3, n, seed=1), random_attention(2, 3, n, seed=2)]
    got = attention_rollout(attentions, prefix, grid, head_fusion=fusion, query=query)
    expected = rollout_by_hand(attentions, prefix, fusion, query).reshape(2, *grid)
    assert got.shape == (2, *grid)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)
    # written out for the mean case: R = A2' A1', A' = ((mean_h A) + I) / 2 (rows already sum to one)
    if fusion == "mean":
        a1, a2 = ((a.double().mean(1) + torch.eye(n, dtype=torch.float64)) / 2 for a in attentions)
        np.testing.assert_allclose(got.reshape(2, -1).numpy(), (a2 @ a1)[:, 0, prefix:].numpy(), atol=1e-14)


def test_discard_ratio_drops_the_weakest_patch_weights_and_keeps_prefix_columns():
    fused = random_attention(2, 1, 7, seed=3)[:, 0]
    out = discard_weakest(fused, 0.5, num_prefix_tokens=2)
    patch = fused[:, :, 2:].flatten(1)
    count = int(patch.shape[1] * 0.5)
    assert torch.equal(out[:, :, :2], fused[:, :, :2])
    for b in range(2):
        zeroed = out[b, :, 2:].flatten() == 0
        assert int(zeroed.sum()) == count
        threshold = patch[b].sort().values[count - 1]
        assert (patch[b][zeroed] <= threshold).all() and (patch[b][~zeroed] >= threshold).all()


def test_hf_and_timm_layouts_give_the_same_distances_and_rollout():
    from vit_transfer.models.convert import convert_vit

    hf = HFViT(tiny_hf_vit(image_size=[32, 48]))  # non-square grid 4x6
    timm_model = convert_vit(hf, "timm")
    assert timm_model.ecosystem == "timm" and timm_model.grid_size == hf.grid_size == (4, 6)
    x = torch.randn(3, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    maps = {m.ecosystem: capture_attention(m, x) for m in (hf, timm_model)}
    for a, b in zip(maps["hf"], maps["timm"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    d_hf, d_timm = (model_attention_distance(maps[k], m) for k, m in (("hf", hf), ("timm", timm_model)))
    torch.testing.assert_close(d_hf, d_timm, atol=1e-5, rtol=0)
    r_hf, r_timm = (attention_rollout(maps[k], m.num_prefix_tokens, m.grid_size, discard_ratio=0.2)
                    for k, m in (("hf", hf), ("timm", timm_model)))
    torch.testing.assert_close(r_hf, r_timm, atol=1e-5, rtol=0)
    s_hf, s_timm = model_pos_embed_similarity(hf), model_pos_embed_similarity(timm_model)
    torch.testing.assert_close(s_hf, s_timm, atol=1e-6, rtol=0)


def test_captured_maps_are_probabilities_and_capture_leaves_the_logits_alone():
    model = TimmViT(tiny_timm_vit(reg_tokens=4, image_size=(32, 48)))  # 1 class + 4 registers, 4x6 grid
    x = torch.randn(2, 3, 32, 48)
    before = model(x)
    maps = capture_attention(model, x)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 5 + 24, 5 + 24)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 2, 29))
    torch.testing.assert_close(model(x), before)
    rollout = attention_rollout(maps, model.num_prefix_tokens, model.grid_size, query="prefix")
    assert rollout.shape == (2, 4, 6) and (rollout > 0).all() and (rollout.flatten(1).sum(1) < 1).all()


def test_deit_uses_two_prefix_tokens():
    model = HFViT(tiny_hf_vit("deit"))
    maps = capture_attention(model, torch.randn(1, 3, 32, 32))
    assert model.num_prefix_tokens == 2 and maps[0].shape[-1] == 2 + 16
    assert model_attention_distance(maps, model).shape == (2, 1, 2)


def test_similarity_is_symmetric_with_a_unit_diagonal_and_matches_cosine():
    model = TimmViT(tiny_timm_vit(image_size=(24, 40)))  # 3x5 grid
    sim = model_pos_embed_similarity(model)
    assert sim.shape == (3, 5, 3, 5)
    flat = sim.reshape(15, 15)
    torch.testing.assert_close(flat, flat.T)
    torch.testing.assert_close(torch.diagonal(flat), torch.ones(15, dtype=flat.dtype))
    rows = model.pos_embed[0, 1:].detach()
    cosine = torch.nn.functional.cosine_similarity(rows[4], rows[11], dim=0)
    assert sim[0, 4, 2, 1].item() == pytest.approx(cosine.item(), abs=1e-6)


def test_locality_of_a_table_built_from_coordinates():
    # rows are (row, col, 1) coordinates: neighbours are more alike than the average pair
    grid = (4, 4)
    coords = torch.tensor([[r, c, 1.0] for r in range(4) for c in range(4)])
    table = torch.cat([torch.zeros(1, 3), coords])[None]
    sim = pos_embed_similarity(table, grid, num_prefix_tokens=1)
    flat = sim.reshape(16, 16)
    near = [flat[i, j] for i in range(16) for j in range(16) if abs(i // 4 - j // 4) + abs(i % 4 - j % 4) == 1]
    far = [flat[i, j] for i in range(16) for j in range(16) if abs(i // 4 - j // 4) + abs(i % 4 - j % 4) > 1]
    got = locality(sim)
    assert got["neighbours"] == pytest.approx(float(sum(near) / len(near)))
    assert got["others"] == pytest.approx(float(sum(far) / len(far)))
    assert got["locality"] > 0


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_lora_model_at_init_measures_as_its_base(ecosystem):
    from vit_transfer.adapters.lora import LoraSettings, apply_lora

    make = (lambda: HFViT(tiny_hf_vit())) if ecosystem == "hf" else (lambda: TimmViT(tiny_timm_vit()))
    base, adapted = make(), make()
    apply_lora(adapted, LoraSettings(r=4))
    x = torch.randn(2, 3, 32, 32)
    d_base = model_attention_distance(capture_attention(base, x), base)
    d_lora = model_attention_distance(capture_attention(adapted, x), adapted)
    torch.testing.assert_close(d_lora, d_base)  # lora_B starts at zero: the same network
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    assert (model_attention_distance(capture_attention(adapted, x), adapted) - d_base).abs().max() > 1e-3


@pytest.mark.parametrize("ecosystem,setting", [("hf", "sdpa"), ("hf", "eager"), ("timm", "sdpa"), ("timm", "mixed")])
def test_inspect_keeps_the_models_attention_setting(tmp_path, ecosystem, setting):
    model = HFViT(tiny_hf_vit()) if ecosystem == "hf" else TimmViT(tiny_timm_vit())
    if setting == "mixed":
        model.model.blocks[0].attn.fused_attn = False
    elif setting == "eager":
        model.set_attention("eager")
    before = attention_state(model)
    from PIL import Image

    images = [Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(3)]
    inspect_model(model, images, tmp_path, image_size=48)
    assert attention_state(model) == before
    assert model.image_size == (32, 32)  # the resized measurement ran on a copy


def test_inspect_command_writes_figures_and_the_numbers_behind_them(tmp_path, hf_vit_dir, image_folder):
    from vit_transfer.cli import main
    from vit_transfer.data import build_transform
    from vit_transfer.diagnostics import find_images

    out = tmp_path / "out"
    folder = image_folder / "test" / "class_0"
    run_folder = tmp_path / "run"  # a training run's folder stands for its model/
    (run_folder / "model").mkdir(parents=True)
    for f in hf_vit_dir.iterdir():
        (run_folder / "model" / f.name).write_bytes(f.read_bytes())
    assert main(["inspect", str(hf_vit_dir), "--images", str(folder), "--image-size", "48",
                 "--compare", str(run_folder), "--output", str(out)]) == 0
    report = json.loads((out / "inspect.json").read_text())
    for name in ("attention_distance.png", "pos_embed_similarity.png", "rollout_model.png", "rollout_compare.png"):
        assert (out / name).stat().st_size > 1000 and name in report["figures"]
    entry = report["models"]["model"]
    assert entry["pos_embed_similarity"]["grid"] == [4, 4]
    assert entry["pos_embed_similarity"]["resized"]["grid"] == [6, 6]
    assert entry["attention_model"]["grid"] == [6, 6]
    assert report["attention_distance_shift_per_block"] == [0.0, 0.0]  # the same model twice
    # the numbers are what the library computes on the same images at 48 px
    from PIL import Image

    model = load_vit(str(hf_vit_dir))
    model.resize(48)
    transform = build_transform(model.preprocessing, train=False)
    images = [Image.open(p) for p in find_images([folder])]
    maps = capture_attention(model, torch.stack([transform(i) for i in images]))
    expected = model_attention_distance(maps, model).mean(1)
    # (inspect feeds uint8 pixels that the model normalises itself; this oracle feeds the float transform)
    np.testing.assert_allclose(entry["attention_distance"]["per_head"], expected.numpy(), rtol=1e-5)
    assert len(entry["rollout"]) == len(images) == report["num_images"]
    # the command folds blocks in one at a time (maps not kept); the list-based rollout agrees
    np.testing.assert_allclose(entry["rollout"], attention_rollout(maps, 1, (6, 6)).numpy(), rtol=1e-5)


@pytest.mark.parametrize("model_type,prefix", [("dinov2", 1), ("dinov2_with_registers", 5)])
def test_hf_dinov2_families_capture_with_their_prefix_tokens(model_type, prefix):
    extra = {"num_register_tokens": 4} if model_type == "dinov2_with_registers" else {}
    model = HFViT(tiny_hf_vit(model_type, **extra))
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    maps = capture_attention(model, x)
    assert model.num_prefix_tokens == prefix and maps[0].shape == (2, 2, prefix + 16, prefix + 16)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 2, prefix + 16))
    torch.testing.assert_close(model(x), before)
    assert attention_rollout(maps, prefix, model.grid_size, query="prefix").shape == (2, 4, 4)


def test_inspect_command_names_a_missing_image_path(tmp_path, hf_vit_dir, capsys):
    from vit_transfer.cli import main

    assert main(["inspect", str(hf_vit_dir), "--images", str(tmp_path / "nope.png"), "--output", str(tmp_path)]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_a_model_without_prefix_tokens_rolls_out_the_mean_row():
    model = TimmViT(tiny_timm_vit(class_token=False, global_pool="avg"))
    maps = capture_attention(model, torch.randn(2, 3, 32, 32))
    assert model.num_prefix_tokens == 0 and maps[0].shape[-1] == 16
    got = attention_rollout(maps, 0, model.grid_size)
    joint = None
    for a in maps:
        step = (a.double().mean(1) + torch.eye(16, dtype=torch.float64)) / 2
        joint = step if joint is None else step @ joint
    torch.testing.assert_close(got.reshape(2, 16), joint.mean(1))
    assert model_attention_distance(maps, model).shape == (2, 2, 2)
