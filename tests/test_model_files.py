"""What load_vit reads beside the weights: the preprocessor config (never a silent guess) and custom heads."""

import json
import shutil
import warnings

import pytest
import torch

from vit_transfer import CheckpointError, load_vit
from vit_transfer.testing import save_tiny_hf_vit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """Put a local folder into an offline Hub cache as ``user/<name>``; returns the repo id."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    def put(folder, name: str = "tiny") -> str:
        repo = cache / f"models--user--{name}"
        commit = "0" * 40
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        return f"user/{name}"

    return put


def _recorded(folder, mean, std):
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std, "resample": 2}))
    return folder


# --- preprocessor_config.json -----------------------------------------------------------------
def test_a_readable_preprocessor_config_gives_mean_std_and_resample(tmp_path):
    folder = _recorded(save_tiny_hf_vit(tmp_path / "m"), [0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        pre = load_vit(folder).preprocessing
    assert pre.mean == (0.1, 0.2, 0.3) and pre.std == (0.4, 0.5, 0.6) and pre.interpolation == "bilinear"


@pytest.mark.parametrize("content", ["{not json", '["a", "list"]', '{"image_mean": "red"}', '{"image_std": [1, 2]}'])
def test_a_corrupt_preprocessor_config_is_an_error_naming_the_file(tmp_path, content):
    folder = save_tiny_hf_vit(tmp_path / "m")
    (folder / "preprocessor_config.json").write_text(content)
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        load_vit(folder)


def test_a_missing_preprocessor_config_warns_naming_the_folder_and_the_values_used(tmp_path):
    folder = save_tiny_hf_vit(tmp_path / "m", model_type="deit")
    with pytest.warns(UserWarning, match=r"no preprocessor_config\.json") as caught:
        pre = load_vit(folder).preprocessing
    message = str(caught[0].message)
    assert str(folder) in message and "0.485" in message and "0.229" in message
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)


def test_a_hub_checkpoint_reads_its_cached_preprocessor_config(tmp_path, hub_cache):
    repo = hub_cache(_recorded(save_tiny_hf_vit(tmp_path / "m"), [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]))
    assert load_vit(repo).preprocessing.mean == (0.1, 0.2, 0.3)


def test_a_hub_checkpoint_without_preprocessor_config_warns_naming_the_repo(tmp_path, hub_cache):
    repo = hub_cache(save_tiny_hf_vit(tmp_path / "m"))
    with pytest.warns(UserWarning, match=r"user/tiny.*preprocessor_config\.json.*0\.5"):
        assert load_vit(repo).preprocessing.mean == (0.5, 0.5, 0.5)


def test_a_hub_checkpoint_with_a_corrupt_preprocessor_config_is_an_error(tmp_path, hub_cache):
    folder = save_tiny_hf_vit(tmp_path / "m")
    (folder / "preprocessor_config.json").write_text("{truncated")
    repo = hub_cache(folder)
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        load_vit(repo)


def test_a_hub_download_failure_other_than_absence_is_not_a_silent_default(tmp_path, hub_cache, monkeypatch):
    import huggingface_hub

    repo = hub_cache(save_tiny_hf_vit(tmp_path / "m"))

    def broken(repo_id, filename, **kwargs):
        if filename == "preprocessor_config.json":
            raise PermissionError(f"cannot read the cached {filename}")
        return original(repo_id, filename, **kwargs)

    original = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(CheckpointError, match=r"user/tiny.*preprocessor_config\.json"):
        load_vit(repo)


# --- a custom head in any weight layout transformers writes --------------------------------------
@pytest.fixture
def mlp_head_model(hf_vit_dir, tmp_path):
    """A saved model with a non-native head (MLP, mean pooling): its weights are read back by load_vit itself."""
    model = load_vit(hf_vit_dir, num_labels=2, id2label={0: "a", 1: "b"}, head="mlp", head_hidden_dim=8,
                     pooling="mean").eval()
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_(generator=torch.Generator().manual_seed(p.numel()))
    folder = model.save(tmp_path / "saved")
    return model, folder


def _relayout(folder, dest, layout: str):
    """The same checkpoint as one safetensors file, safetensors shards with an index, or a PyTorch .bin."""
    from safetensors.torch import load_file

    dest.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(folder / name, dest / name)
    state = load_file(folder / "model.safetensors")
    if layout == "bin":
        torch.save(state, dest / "pytorch_model.bin")
    elif layout == "sharded":
        from huggingface_hub import save_torch_state_dict

        save_torch_state_dict(state, dest, max_shard_size=20_000)
        assert (dest / "model.safetensors.index.json").is_file() and len(list(dest.glob("*.safetensors"))) > 2
    return dest


@pytest.mark.parametrize("layout", ["sharded", "bin"])
def test_a_custom_head_loads_from_sharded_and_bin_checkpoints(mlp_head_model, tmp_path, layout):
    model, folder = mlp_head_model
    source = _relayout(folder, tmp_path / layout, layout)
    reloaded = load_vit(source).eval()
    assert reloaded.head_spec == model.head_spec
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["sharded", "bin"])
def test_a_custom_head_loads_from_a_cached_hub_repo(mlp_head_model, tmp_path, hub_cache, layout):
    model, folder = mlp_head_model
    repo = hub_cache(_relayout(folder, tmp_path / layout, layout), name=f"head-{layout}")
    reloaded = load_vit(repo).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=1e-6)
