"""Library calls leave the caller's state as they found it: Accelerate's global state, the global torch random
stream, and every module's train/eval flag (also when the call fails)."""

from __future__ import annotations

import pytest
import torch

from vit_transfer import load_vit
from vit_transfer.testing import write_image_folder


def module_modes(model: torch.nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def mixed_modes(model: torch.nn.Module) -> dict[str, bool]:
    """Training mode, with one block in eval (a caller's frozen part): a plain ``train(was_training)`` loses it."""
    model.train()
    blocks = [m for name, m in model.named_modules() if name.endswith(("layer.0", "layers.0", "blocks.0"))]
    assert blocks, "no first block found"
    blocks[0].eval()
    return module_modes(model)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("colours"), per_class=3, size=32)


# --- Accelerate's global state ----------------------------------------------------------------
def call_without_accelerator(call: str, hf_vit_dir, colours, tmp_path) -> int:
    """Run one library call that builds its own accelerator; returns how many images it scored."""
    from vit_transfer.inference import evaluate, load_split, predict

    model = load_vit(hf_vit_dir)
    dataset, names = load_split(str(colours), "test")
    if call == "predict":
        rows = predict(model, colours / "test", top_k=2, progress=False).predictions
        assert all(len(r.labels) == 2 for r in rows)
        return len(rows)
    if call == "evaluate":
        return evaluate(model, dataset, names, progress=False).numbers["num_examples"]
    if call == "extract_features":
        from vit_transfer.probe import extract_features

        return len(extract_features(model, dataset, progress=False).labels)
    from vit_transfer.config import ModelConfig
    from vit_transfer.data import DataConfig
    from vit_transfer.probe import ProbeConfig
    from vit_transfer.probe.config import ProbeRecipe
    from vit_transfer.probe.run import linear_probe

    recipe = ProbeRecipe(model=ModelConfig(source=str(hf_vit_dir)), data=DataConfig(source=str(colours)),
                         probe=ProbeConfig(cache=False, shots=[], c_steps=3, c_refine_steps=0),
                         output_dir=str(tmp_path / "probe"), seed=3)
    return linear_probe(recipe, progress=False).samples["test"]


CALLS = ["predict", "evaluate", "extract_features", "linear_probe"]
STATES = ("PartialState", "AcceleratorState", "GradientState")


def shared_states() -> list[dict]:
    import accelerate.state

    return [dict(getattr(accelerate.state, name)._shared_state) for name in STATES]


def clear_shared_states() -> None:
    import accelerate.state

    for name in STATES:
        getattr(accelerate.state, name)._shared_state.clear()


@pytest.mark.parametrize("call", CALLS)
def test_calls_keep_the_callers_accelerator(call, hf_vit_dir, colours, tmp_path):
    from accelerate import Accelerator

    clear_shared_states()
    caller = Accelerator(mixed_precision="bf16", cpu=True, gradient_accumulation_steps=4)
    before = shared_states()
    assert call_without_accelerator(call, hf_vit_dir, colours, tmp_path) == 6
    assert shared_states() == before
    assert caller.state.mixed_precision == "bf16" and caller.gradient_accumulation_steps == 4


@pytest.mark.parametrize("call", CALLS)
def test_calls_without_prior_state_leave_none(call, hf_vit_dir, colours, tmp_path):
    from accelerate import Accelerator

    clear_shared_states()
    assert call_without_accelerator(call, hf_vit_dir, colours, tmp_path) == 6
    assert shared_states() == [{}, {}, {}]
    assert Accelerator(mixed_precision="bf16", cpu=True).state.mixed_precision == "bf16"  # nothing in the way
    clear_shared_states()


# --- the global random stream ------------------------------------------------------------------
def test_reinitialize_keeps_the_global_stream_and_depends_only_on_its_seed(hf_vit_dir):
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        model = load_vit(hf_vit_dir)
        model.reinitialize(seed=7)
        assert torch.equal(torch.random.get_rng_state(), before)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    other = load_vit(hf_vit_dir)
    other.reinitialize(seed=8)
    assert not torch.equal(torch.cat([p.detach().flatten() for p in other.parameters()]), weights[0])


def test_create_vit_keeps_the_global_stream_and_depends_only_on_its_seed():
    from vit_transfer.models.scratch import ArchitectureConfig, create_vit

    arch = ArchitectureConfig(image_size=16, patch_size=4, hidden_size=16, depth=1, num_heads=2, mlp_dim=32,
                              pos_embed="learned")
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        model = create_vit(arch, num_labels=3, seed=5)
        assert torch.equal(torch.random.get_rng_state(), before)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_linear_probe_keeps_the_global_stream(tmp_path, hf_vit_dir, colours):
    from vit_transfer.config import ModelConfig
    from vit_transfer.data import DataConfig
    from vit_transfer.probe import ProbeConfig
    from vit_transfer.probe.config import ProbeRecipe
    from vit_transfer.probe.run import linear_probe

    recipe = ProbeRecipe(model=ModelConfig(source=str(hf_vit_dir)), data=DataConfig(source=str(colours)),
                         probe=ProbeConfig(cache=False, shots=[], c_steps=3, c_refine_steps=0),
                         output_dir=str(tmp_path / "probe"), seed=3)
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    result = linear_probe(recipe, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert 0.0 <= result.linear.top1 <= 1.0 and (tmp_path / "probe" / "probe_results.json").is_file()


# --- module modes ------------------------------------------------------------------------------
def test_extract_features_keeps_each_modules_mode(hf_vit_dir, colours):
    from vit_transfer.inference import load_split
    from vit_transfer.probe import extract_features

    model = load_vit(hf_vit_dir)
    modes = mixed_modes(model)
    dataset, _ = load_split(str(colours), "test")
    feats = extract_features(model, dataset, progress=False)
    assert feats.features.shape == (6, 32)
    assert module_modes(model) == modes


def test_head_agreement_keeps_each_modules_mode(hf_vit_dir):
    from vit_transfer.probe import head_agreement

    model = load_vit(hf_vit_dir, num_labels=3)
    modes = mixed_modes(model)
    classifier = model.model.classifier
    gap = head_agreement(model, torch.randn(2, 3, 32, 32), classifier.weight.detach(), classifier.bias.detach())
    assert gap < 1e-4  # a linear cls head is exactly the probe on cls features
    assert module_modes(model) == modes


@pytest.mark.parametrize("to", ["timm"])
def test_convert_keeps_the_source_mode_and_the_copy_follows_it(hf_vit_dir, to):
    from vit_transfer.models.convert import convert_vit, max_logit_difference

    model = load_vit(hf_vit_dir)
    modes = mixed_modes(model)
    converted = convert_vit(model, to)
    assert module_modes(model) == modes
    assert converted.training  # the same network, in the mode its source was in
    converted_modes = module_modes(converted)
    assert max_logit_difference(model, converted) < 1e-4
    assert module_modes(model) == modes and module_modes(converted) == converted_modes


class Boom(RuntimeError):
    pass


def failing_loader(batches: int):
    for _ in range(batches):
        yield {"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 1])}
    raise Boom("the loader failed mid-way")


def test_evaluate_model_restores_modes_when_the_loop_fails(hf_vit_dir):
    from accelerate import Accelerator

    from vit_transfer.runtime.evaluation import evaluate_model

    model = load_vit(hf_vit_dir)
    modes = mixed_modes(model)
    one_batch = [{"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.tensor([0, 1])}]
    assert evaluate_model(model, one_batch, Accelerator(cpu=True))["num_examples"] == 2
    assert module_modes(model) == modes
    with pytest.raises(Boom):
        evaluate_model(model, failing_loader(1), Accelerator(cpu=True))
    assert module_modes(model) == modes


def test_score_dataset_restores_modes_when_the_model_fails(hf_vit_dir, colours):
    from vit_transfer.inference import load_split, predict

    model = load_vit(hf_vit_dir)
    modes = mixed_modes(model)

    def explode(module, args):
        raise Boom("forward failed")

    handle = model.model.register_forward_pre_hook(explode)
    with pytest.raises(Boom):
        predict(model, colours / "test", progress=False)
    handle.remove()
    assert module_modes(model) == modes
