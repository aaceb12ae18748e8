"""The loop's parts with exact numbers: schedule, parameter groups, top-k, EMA, evaluation, recipe checks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vit_transfer.errors import ConfigError
from vit_transfer.models import load_vit
from vit_transfer.training import (
    EvalConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    build_optimizer,
    build_scheduler,
    evaluate_model,
    fit,
    prepare_eval_loader,
)
from vit_transfer.metrics import topk_correct
from vit_transfer.data.loader import EpochShuffle
from vit_transfer.training.optim import layer_id, param_groups


def lrs(cfg: ScheduleConfig, total: int, peak: float = 1.0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine():
    values = lrs(ScheduleConfig("cosine", warmup_steps=4, min_lr_ratio=0.0), total=14)
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear from 0, peak on the last warmup step
    # then cosine over the remaining 10 steps: half-way is 0.5, the last step just above 0
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.5)
    assert values[13] == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 10)))


def test_linear_constant_and_floor():
    assert lrs(ScheduleConfig("linear", warmup_steps=0), total=4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert lrs(ScheduleConfig("constant", warmup_steps=2), total=4) == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert lrs(ScheduleConfig("linear", min_lr_ratio=0.2), total=3, peak=10.0) == pytest.approx(
        [10.0, 10 * (0.2 + 0.8 * 2 / 3), 10 * (0.2 + 0.8 / 3)])
    with pytest.warns(UserWarning, match="schedule.warmup_steps=50 exceeds the run's 10 steps"):
        values = lrs(ScheduleConfig("constant", warmup_steps=50), total=10)
    assert values == pytest.approx([i / 10 for i in range(1, 11)])
    with pytest.raises(ConfigError, match="schedule.warmup_steps"):
        lrs(ScheduleConfig(warmup_steps=-1), total=10)


@pytest.mark.parametrize("name, layer", [
    ("model.vit.embeddings.cls_token", 0),
    ("model.vit.embeddings.patch_embeddings.projection.weight", 0),
    ("model.vit.layers.0.attention.q_proj.weight", 1),  # transformers 5.x
    ("model.vit.encoder.layer.1.attention.attention.query.weight", 2),  # transformers 4.x
    ("model.blocks.11.attn.qkv.weight", 12),  # timm
    ("model.blocks.0.attn.qkv.base_layer.weight", 1),  # under peft
    ("model.pos_embed", 0),
    ("model.vit.layernorm.weight", 13),
    ("model.classifier.weight", 13),
    ("model.head.weight", 13),
])
def test_layer_ids(name, layer):
    assert layer_id(name, 12) == layer


@pytest.mark.parametrize("fixture", ["hf_vit_dir", "timm_vit_dir"])
def test_layer_decay_and_weight_decay_groups(request, fixture):
    model = load_vit(request.getfixturevalue(fixture), num_labels=3)
    cfg = OptimConfig(name="adamw", lr=1.0, weight_decay=0.05, layer_decay=0.5)
    groups = param_groups(model, cfg)
    by_name = {n: g for g in groups for n in g["names"]}
    assert len(by_name) == sum(1 for _ in model.parameters())
    head = "model.classifier.weight" if fixture == "hf_vit_dir" else "model.head.weight"
    embed = ("model.vit.embeddings.patch_embeddings.projection.weight" if fixture == "hf_vit_dir"
             else "model.patch_embed.proj.weight")
    block0 = next(n for n in by_name if (".layers.0." in n or ".blocks.0." in n) and n.endswith("fc1.weight"))
    block1 = block0.replace(".0.", ".1.")
    # 2 blocks: embeddings 0.5**3, block 0 0.5**2, block 1 0.5, head 1
    assert [by_name[n]["lr"] for n in (embed, block0, block1, head)] == [0.125, 0.25, 0.5, 1.0]
    assert by_name[head]["weight_decay"] == 0.05
    for name, group in by_name.items():
        if name.endswith(".bias") or "norm" in name or "pos" in name or "cls_token" in name:
            assert group["weight_decay"] == 0.0, name
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert sorted(g["lr"] for g in opt.param_groups) == sorted(g["lr"] for g in groups)


def test_head_method_optimises_only_the_head(hf_vit_dir):
    from vit_transfer.training import prepare_method

    model = load_vit(hf_vit_dir, num_labels=3)
    prepare_method(model, "head")
    opt = build_optimizer(model, OptimConfig())
    params = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in model.head_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, OptimConfig())


def test_topk_correct_counts_on_the_device_and_caps_k_at_the_classes():
    scores = torch.tensor([[9., 8, 7, 6, 5, 4], [4, 5, 6, 7, 9, 8], [8, 9, 7, 6, 5, 4], [5, 9, 8, 6, 7, 4]])
    truth = torch.tensor([0, 0, 0, 5])  # top-1: row 1; top-5: rows 1 and 3 (the truth ranks 2nd); row 2 and 4: 6th
    assert topk_correct(scores, truth).tolist() == [1, 2]
    assert topk_correct(scores[:, :3], torch.tensor([0, 0, 0, 2]), (1, 5)).tolist() == [1, 4]  # 3 classes: top-5 = all


def _colour_loader(model, n=32, batch=8, shuffle=True, broken=()):
    """Solid-colour images of 3 classes; the indices in ``broken`` are undecodable."""
    from PIL import Image

    from vit_transfer.data import build_transform, make_dataloader

    items = [(None if i in broken else Image.new("RGB", (32, 32), tuple(200 * (i % 3 == c) for c in range(3))), i % 3)
             for i in range(n)]
    return make_dataloader(items, build_transform(model.preprocessing, False), batch, shuffle=shuffle)


def _eager_and_compiled(hf_vit_dir, broken: tuple[int, ...]) -> tuple[list[list[float]], dict]:
    """Per-step train losses of the same 6-step run eager and with train.compile; the compiled run's metrics."""
    torch._dynamo.reset()
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = load_vit(hf_vit_dir, num_labels=3)
        result = fit(model, _colour_loader(model, shuffle=False, broken=broken),
                     optim=OptimConfig(name="sgd", lr=0.05),
                     train=TrainConfig(max_steps=6, log_every=1, compile=compiled))
        losses.append([h["train_loss"] for h in result.history if "train_loss" in h])
    return losses, result.metrics


def test_ema_of_a_short_run_follows_the_trained_weights(hf_vit_dir):
    """ema_decay 0.9999 over 30 steps: without warmup the average would still be ~99.7% the start."""
    torch.manual_seed(0)
    runs = {}
    for decay in (None, 0.9999):
        model = load_vit(hf_vit_dir, num_labels=3)
        start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        fit(model, _colour_loader(model), optim=OptimConfig(name="adamw", lr=0.01),
            train=TrainConfig(max_steps=30, log_every=10, ema_decay=decay))
        runs[decay] = torch.cat([p.detach().flatten() for p in model.parameters()])
    trained, averaged = runs[None], runs[0.9999]
    moved = (trained - start).norm()
    assert moved > 0.1
    assert (averaged - trained).norm() < 0.25 * moved  # near where training went, not where it started
    assert (averaged - start).norm() > 0.5 * moved


@pytest.mark.parametrize("key, value", [("max_steps", 0), ("grad_accum_steps", 0), ("ema_decay", 1.0),
                                        ("log_every", 0)])
def test_train_values_are_checked_where_the_recipe_is_read(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        TrainConfig(**{key: value})


def test_epoch_shuffle_is_a_function_of_seed_and_epoch():
    a, b = EpochShuffle(20, seed=3), EpochShuffle(20, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    order = [i for _, i in a]
    assert sorted(order) == list(range(20)) and order != list(range(20))
    b.set_epoch(3)
    assert [i for _, i in b] != order


def test_evaluate_model_matches_a_direct_computation(hf_vit_dir):
    from accelerate import Accelerator
    from PIL import Image

    from vit_transfer.data import build_transform, make_dataloader

    model = load_vit(hf_vit_dir, num_labels=3, head_init="trunc_normal").eval()
    items = [(Image.new("RGB", (32, 32), (37 * i % 256, 91 * i % 256, 53 * i % 256)), i % 3) for i in range(11)]
    items[4] = (None, 1)  # one undecodable image: dropped, counted, and the rest lines up
    transform = build_transform(model.preprocessing, False)
    loader = make_dataloader(items, transform, 4, shuffle=False)
    from vit_transfer.runtime.accelerator import make_accelerator

    acc: Accelerator = make_accelerator(cpu=True)
    model, loader = acc.prepare(model), prepare_eval_loader(acc, loader)
    scores = evaluate_model(model, loader, acc)

    good = [(transform(img), y) for img, y in items if img is not None]
    x = torch.stack([t for t, _ in good])
    y = torch.tensor([label for _, label in good])
    with torch.no_grad():
        logits = model(x)
    assert scores["num_examples"] == 10 and scores["skipped_images"] == 1
    assert scores["top1"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    assert scores["top5"] == 1.0
    assert scores["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert EvalConfig().every_steps is None


# --- precision ----------------------------------------------------------------------------------
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    import vit_transfer.runtime.accelerator as accel

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert accel.resolve_precision("auto") == "no"
    assert accel.make_accelerator("auto").mixed_precision == "no"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert accel.resolve_precision("auto") == "bf16"
    assert accel.make_accelerator("auto").mixed_precision == "bf16"
    assert accel.resolve_precision("no") == "no" and accel.resolve_precision("fp16") == "fp16"


def test_explicit_bf16_on_a_cpu_that_emulates_it_warns_but_is_kept(monkeypatch):
    import warnings

    import vit_transfer.runtime.accelerator as accel

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        assert accel.resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert accel.resolve_precision("bf16") == "bf16"


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_and_default_optimizer_steps_agree(hf_vit_dir, name):
    """optim.fused (default): torch's fused kernel; the same steps as the per-tensor loop, to float rounding."""
    models = [load_vit(hf_vit_dir, num_labels=3) for _ in range(2)]
    cfg = OptimConfig(name=name, lr=0.01, weight_decay=0.05)
    opts = [build_optimizer(models[0], cfg), build_optimizer(models[1], dataclasses.replace(cfg, fused=False))]
    assert opts[0].defaults["fused"] and not opts[1].defaults["fused"]  # the CPU has fused kernels (torch >= 2.4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=gen) for p in models[0].parameters()]
        for model, opt in zip(models, opts):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    start = load_vit(hf_vit_dir, num_labels=3).state_dict()
    moved = max((p - start[n]).abs().max().item() for n, p in models[0].state_dict().items())
    assert moved > 1e-3
    for (name_, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name_)


def test_the_loop_reports_the_fused_optimizer(hf_vit_dir):
    model = load_vit(hf_vit_dir, num_labels=3)
    result = fit(model, _colour_loader(model), optim=OptimConfig(name="adamw", lr=0.01), train=TrainConfig(max_steps=1))
    assert result.metrics["fused_optimizer"] is True


@pytest.mark.parametrize("key, value", [("lr", 0.0), ("layer_decay", 1.5)])
def test_optim_values_are_checked_where_the_recipe_is_read(key, value):
    with pytest.raises(ConfigError, match=f"optim.{key}"):
        OptimConfig(**{key: value})


@pytest.mark.parametrize("override", ["schedule.warmup_steps=-1", "schedule.min_lr_ratio=2", "lora.r=0",
                                      "augment.label_smoothing=1.0", "optim.lr=0", "eval.every_steps=0",
                                      "data.val_fraction=1.0", "data.max_train_samples=0",
                                      "model.interpolation=bicubc"])
def test_a_bad_recipe_value_fails_when_the_recipe_is_read(override):
    from vit_transfer.training import load_train_recipe

    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.split(".")[-1] if key != "model.interpolation" else "bicubc"):
        recipe = load_train_recipe(None, [override])
        if key == "model.interpolation":  # read when the model is built: the one place it is parsed
            from vit_transfer.layers import Interpolation

            Interpolation.parse(recipe.model.interpolation)


def test_compile_recompiles_once_for_all_batch_sizes_and_matches_eager(hf_vit_dir, monkeypatch):
    """train.compile: the first graph is specialised to its batch size; the first batch of another size
    (shortened by undecodable images) recompiles once into a dynamic-batch graph that serves every later size.
    Counted with dynamo's CompileCounter backend (inductor's own numerics are torch's to test)."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend=counter, **kw))
    losses, metrics = _eager_and_compiled(hf_vit_dir, broken=(3, 9, 10, 17, 18, 19))  # batches of 7, 6, 5, 8 rows
    assert counter.frame_count == 2  # static at 7 rows, then one dynamic graph for 6, 5 and 8: six steps
    assert metrics["compile_seconds"] > 0
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


@pytest.mark.slow
def test_compile_with_inductor_gives_the_eager_loss_curve(hf_vit_dir):
    """The real backend (about 40 s to compile on 2 CPU cores): same losses as eager to float rounding."""
    losses, metrics = _eager_and_compiled(hf_vit_dir, broken=(3,))
    assert metrics["compile_seconds"] > 0
    assert len(losses[1]) == 6 and losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_auto_precision_is_one_rule_for_training_and_the_probe(monkeypatch):
    """LP-FT probes in the precision its fine-tune trains in: both resolve ``auto`` in vit_transfer.precision."""
    from vit_transfer.precision import probe_precision
    from vit_transfer.probe.features import autocast_dtype
    from vit_transfer.runtime.accelerator import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cpu = torch.device("cpu")
    for native, train_name, dtype in ((False, "no", None), (True, "bf16", torch.bfloat16)):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda native=native: native)
        assert resolve_precision("auto") == train_name
        assert autocast_dtype(probe_precision("auto"), cpu) is dtype
    assert [probe_precision(p) for p in ("no", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]


def test_the_relative_position_bias_is_not_weight_decayed_like_the_absolute_tables():
    """The position-embedding ablation compares tables on equal terms: none of them is decayed."""
    from vit_transfer.config import ModelConfig
    from vit_transfer.models import load_vit_from_config

    cfg = ModelConfig(source="scratch")
    cfg.scratch.pos_embed = "relative"
    model = load_vit_from_config(cfg, 3, {0: "a", 1: "b", 2: "c"}, 0)
    by_name = {n: g for g in param_groups(model, OptimConfig(name="adamw", weight_decay=0.05)) for n in g["names"]}
    tables = [n for n in by_name if "relative_position_bias_table" in n]
    assert tables and all(by_name[n]["weight_decay"] == 0.0 for n in tables)
    assert any(g["weight_decay"] == 0.05 for g in by_name.values())  # the matrices still are
