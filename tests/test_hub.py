"""push --dry-run: the staged folder reloads with the stock loaders to the same logits; the card carries the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from vit_transfer import load_vit
from vit_transfer.hub import HubError, NoTrainedModelError, push_run

LABELS = {0: "cat", 1: "dog", 2: "fox", 3: "owl"}
METRICS = {"eval_top1": 0.8125, "eval_top5": 1.0, "eval_loss": 0.4321, "train_loss": 0.3, "steps": 40,
           "seconds": 3.5, "images_per_second": 91.4, "test_top1": 0.75, "test_top5": 0.96875}
LEAKY_TOKEN = "hf_" + "Q" * 34  # a token someone pasted into a recipe: must never reach the card


def _randomise_head(model) -> None:
    """New heads start at zero (all logits 0): randomise them so logit checks can fail."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.head_parameters():
            p.normal_(0, 0.5)


def _write_metadata(run: Path, base: str, ecosystem: str, method: str, metrics: dict | None = METRICS) -> None:
    run.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    recipe = {
        "model": {"source": base, "image_size": 48},
        "data": {"source": "./flowers", "eval_split": None},
        "optim": {"lr": 0.003, "momentum": 0.9},
        "train": {"batch_size": 8, "steps": 40, "hub_token": LEAKY_TOKEN},
    }
    if method == "lora":
        recipe["lora"] = {"r": 4, "alpha": 8}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (run / "run_info.json").write_text(json.dumps({
        "base_model": base, "ecosystem": ecosystem, "image_size": [48, 48], "original_image_size": [32, 32],
        "patch_size": [8, 8], "num_labels": 4, "id2label": {str(k): v for k, v in LABELS.items()},
        "dataset": "./flowers", "method": method,
        "command": f"vit-transfer train --recipe recipe.yaml optim.lr=0.003 --token {LEAKY_TOKEN}",
        "versions": {"vit_transfer": "0.1.0", "torch": torch.__version__},
    }))


def _resized(source: str):
    model = load_vit(source, image_size=48, num_labels=4, id2label=LABELS).eval()
    _randomise_head(model)
    return model


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(0)
    return torch.randn(2, 3, 48, 48)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, hf_vit_dir):
    run = tmp_path_factory.mktemp("hf_run")
    model = _resized(str(hf_vit_dir))
    model.save(run / "model")
    _write_metadata(run, str(hf_vit_dir), "hf", "full")
    return run, model


@pytest.fixture(scope="module")
def timm_run(tmp_path_factory, timm_vit_dir):
    run = tmp_path_factory.mktemp("timm_run")
    model = _resized(str(timm_vit_dir))
    model.save(run / "model")
    _write_metadata(run, str(timm_vit_dir), "timm", "full")
    return run, model


def _lora_model(source: str):
    from peft import LoraConfig, get_peft_model

    model = _resized(source)
    peft_model = get_peft_model(model.model, LoraConfig(
        r=4, lora_alpha=8, target_modules=model.default_lora_targets(), modules_to_save=model.head_module_names()))
    torch.manual_seed(2)
    with torch.no_grad():  # lora_B starts at zero: give it weights so the adapter changes the logits
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    return model, peft_model


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, hf_vit_dir):
    """A LoRA run that saved only adapter/ (lora.merge: false)."""
    run = tmp_path_factory.mktemp("lora_run")
    model, peft_model = _lora_model(str(hf_vit_dir))
    peft_model.save_pretrained(run / "adapter")
    _write_metadata(run, str(hf_vit_dir), "hf", "lora")
    return run, model


# --- full models through the stock loaders -----------------------------------------------------
def test_hf_dry_run_reloads_with_automodel_and_pipeline(hf_run, tmp_path, pixels):
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    run, model = hf_run
    result = push_run(run, "me/tiny-vit", dry_run_dir=tmp_path / "up")
    folder = tmp_path / "up"
    assert result.dry_run and result.what == "model" and result.library_name == "transformers"
    assert sorted(p.name for p in folder.iterdir()) == result.files == [
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert (folder / "model.safetensors").read_bytes() == (run / "model" / "model.safetensors").read_bytes()

    stock = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert stock.config.image_size == 48 and stock.config.id2label == LABELS
    with torch.no_grad():
        torch.testing.assert_close(stock(pixel_values=pixels).logits, model(pixels))

    image = Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy())
    scores = {d["label"]: d["score"] for d in pipeline("image-classification", model=str(folder))(image)}
    inputs = AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (48, 48)
    with torch.no_grad():
        expected = model(inputs["pixel_values"]).softmax(-1)[0]
    assert set(scores) == set(LABELS.values())
    torch.testing.assert_close(torch.tensor([scores[LABELS[i]] for i in range(4)]), expected, atol=1e-5, rtol=1e-4)


def test_timm_dry_run_reloads_with_create_model(timm_run, tmp_path, pixels):
    import timm

    run, model = timm_run
    result = push_run(run, "me/tiny-timm", dry_run_dir=tmp_path / "up")
    folder = tmp_path / "up"
    assert result.library_name == "timm" and result.files == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["num_classes"] == 4
    assert cfg["pretrained_cfg"]["input_size"] == [3, 48, 48] and cfg["label_names"] == list(LABELS.values())
    stock = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(pixels), model(pixels))


# --- LoRA: adapter alone, merged -------------------------------------------------------------
def test_adapter_dry_run_reloads_with_peft(lora_run, hf_vit_dir, tmp_path, pixels):
    from peft import PeftModel

    run, model = lora_run
    result = push_run(run, "me/tiny-lora", dry_run_dir=tmp_path / "up")  # auto: only an adapter was saved
    folder = tmp_path / "up"
    assert result.what == "adapter" and result.library_name == "peft"
    assert result.files == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(hf_vit_dir)

    base = load_vit(str(hf_vit_dir), image_size=48, num_labels=4, id2label=LABELS).eval()
    with torch.no_grad():
        before = base(pixels)
        reloaded = PeftModel.from_pretrained(base.model, str(folder)).eval()
        logits = reloaded(pixel_values=pixels).logits
        expected = model(pixels)
    torch.testing.assert_close(logits, expected)
    assert (before - expected).abs().max() > 0.1  # the adapter (and its head) really changed the model


def test_merged_dry_run_merges_the_adapter_into_a_stock_model(lora_run, tmp_path, pixels):
    from transformers import AutoModelForImageClassification

    run, model = lora_run
    result = push_run(run, "me/tiny-merged", what="merged", dry_run_dir=tmp_path / "up")
    assert result.what == "merged" and result.library_name == "transformers"
    assert "adapter_config.json" not in result.files and "model.safetensors" in result.files
    stock = AutoModelForImageClassification.from_pretrained(tmp_path / "up").eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(pixel_values=pixels).logits, model(pixels), atol=1e-5, rtol=1e-4)


def test_timm_lora_run_pushes_merged_model_or_adapter(tmp_path, timm_vit_dir, pixels):
    import timm
    from peft import PeftModel

    model, peft_model = _lora_model(str(timm_vit_dir))
    run = tmp_path / "run"
    peft_model.save_pretrained(run / "adapter")
    with torch.no_grad():
        expected = model(pixels)
    model.model = peft_model.merge_and_unload()  # what training writes to model/ with lora.merge: true
    model.save(run / "model")
    _write_metadata(run, str(timm_vit_dir), "timm", "lora")

    auto = push_run(run, "me/t", dry_run_dir=tmp_path / "auto")
    assert auto.what == "merged" and auto.library_name == "timm"
    stock = timm.create_model(f"local-dir:{tmp_path / 'auto'}", pretrained=True).eval()
    adapter = push_run(run, "me/t", what="adapter", dry_run_dir=tmp_path / "adapter")
    base = load_vit(str(timm_vit_dir), image_size=48, num_labels=4, id2label=LABELS).eval()
    reloaded = PeftModel.from_pretrained(base.model, str(tmp_path / "adapter")).eval()
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    with torch.no_grad():
        torch.testing.assert_close(stock(pixels), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(reloaded(pixels), expected)
    assert adapter.library_name == "peft" and cfg["base_model_name_or_path"] == str(timm_vit_dir)


def test_adapter_folder_alone_knows_its_base_from_vit_transfer_adapter_json(hf_vit_dir, tmp_path, pixels):
    """The training loop's save_adapter records base, size, labels and head: enough to merge with no run_info."""
    from transformers import AutoModelForImageClassification

    from vit_transfer.adapters import LoraSettings, apply_lora, save_adapter

    model = _resized(str(hf_vit_dir))
    handle = apply_lora(model, LoraSettings(r=4))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in handle.peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
        expected = model(pixels)
    save_adapter(model, tmp_path / "adapter")

    adapter = push_run(tmp_path / "adapter", "me/a", dry_run_dir=tmp_path / "a")
    assert adapter.what == "adapter" and "vit_transfer_adapter.json" in adapter.files
    assert "32x32" not in (tmp_path / "a" / "README.md").read_text()  # no original size known: no invented one
    assert f'load_vit("{hf_vit_dir}", image_size=(48, 48), num_labels=4)' in (tmp_path / "a" / "README.md").read_text()
    merged = push_run(tmp_path / "adapter", "me/m", what="merged", dry_run_dir=tmp_path / "m")
    stock = AutoModelForImageClassification.from_pretrained(tmp_path / "m").eval()
    assert merged.what == "merged" and stock.config.id2label == LABELS
    with torch.no_grad():
        torch.testing.assert_close(stock(pixel_values=pixels).logits, expected, atol=1e-5, rtol=1e-4)


# --- the model card ----------------------------------------------------------------------------
def test_card_carries_metrics_settings_and_no_token(lora_run, tmp_path):
    from huggingface_hub import ModelCard

    run, _ = lora_run
    push_run(run, "me/tiny-lora", what="adapter", dry_run_dir=tmp_path / "up")
    text = (tmp_path / "up" / "README.md").read_text()
    card = ModelCard.load(tmp_path / "up" / "README.md")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "image-classification"
    assert {"vit-transfer", "lora", "transformers"} <= set(card.data.tags)
    values = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert values == {
        ("validation", "Top-1 accuracy"): METRICS["eval_top1"], ("validation", "Top-5 accuracy"): METRICS["eval_top5"],
        ("test", "Top-1 accuracy"): METRICS["test_top1"], ("test", "Top-5 accuracy"): METRICS["test_top5"],
    }
    assert all(r.task_type == "image-classification" and r.metric_type == "accuracy" for r in card.data.eval_results)
    assert "32x32 -> 48x48 (patch 8x8, grid 4x4 -> 6x6)" in text
    assert "| Rank `r` | 4 |" in text and "`q_proj`" in text and "`classifier`" in text
    assert "`optim.lr` | `0.003`" in text and "vit-transfer train --recipe recipe.yaml" in text
    assert "PeftModel.from_pretrained(model.model, \"me/tiny-lora\")" in text
    assert f"- torch {torch.__version__}" in text
    assert LEAKY_TOKEN not in text and "<redacted>" in text
    assert card.data.base_model is None  # a local path is not a Hub id: no broken base_model link


def test_card_names_hub_base_model_and_timm_usage(timm_run, tmp_path):
    from huggingface_hub import ModelCard

    run, _ = timm_run
    info = json.loads((run / "run_info.json").read_text())
    copy = tmp_path / "run"
    (copy / "model").mkdir(parents=True)
    for f in (run / "model").iterdir():
        (copy / "model" / f.name).write_bytes(f.read_bytes())
    _write_metadata(copy, "vit_tiny_patch16_224.augreg_in21k", "timm", "full")
    push_run(copy, "me/tiny-timm", dry_run_dir=tmp_path / "up")
    card = ModelCard.load(tmp_path / "up" / "README.md")
    assert info["ecosystem"] == "timm"
    assert card.data.base_model == "timm/vit_tiny_patch16_224.augreg_in21k"
    assert card.data.library_name == "timm" and card.data.license == "apache-2.0"
    assert 'timm.create_model("hf-hub:me/tiny-timm", pretrained=True)' in card.text


def test_card_of_a_run_that_returned_its_start_names_the_start(timm_run, tmp_path):
    """train.keep_start_within_noise saved LP-FT's start (the probe): the card must not call it a fine-tune."""
    import yaml

    run, _ = timm_run
    copy = tmp_path / "run"
    (copy / "model").mkdir(parents=True)
    for f in (run / "model").iterdir():
        (copy / "model" / f.name).write_bytes(f.read_bytes())
    _write_metadata(copy, str(run), "timm", "full", metrics={**METRICS, "returned": "start"})
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    recipe["model"]["head_init"] = "probe"
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    push_run(copy, "me/lp-ft-start", dry_run_dir=tmp_path / "up")
    text = (tmp_path / "up" / "README.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| Training method"))
    assert "linear probe on the frozen backbone (LP-FT's start)" in line and "not clearly better" in line
    assert "(LP-FT)" not in line  # the LP-FT wording of a returned fine-tune
    (copy / "metrics.json").write_text(json.dumps({**METRICS, "returned": "fine-tune"}))
    push_run(copy, "me/lp-ft", dry_run_dir=tmp_path / "up2")
    text = (tmp_path / "up2" / "README.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| Training method"))
    assert "head started from the linear probe (LP-FT)" in line and "start was saved" not in line


@pytest.mark.parametrize("ecosystem", ["hf", "timm"])
def test_vit_transfer_head_is_pushed_with_a_load_vit_snippet(hf_vit_dir, timm_vit_dir, tmp_path, pixels, ecosystem):
    source = str(hf_vit_dir if ecosystem == "hf" else timm_vit_dir)
    model = load_vit(source, image_size=48, num_labels=4, head="mlp", pooling="mean", head_hidden_dim=16).eval()
    _randomise_head(model)
    model.save(tmp_path / "model")
    result = push_run(tmp_path / "model", "me/mlp-head", dry_run_dir=tmp_path / "up")
    text = (tmp_path / "up" / "README.md").read_text()
    assert result.library_name == {"hf": "transformers", "timm": "timm"}[ecosystem]
    loader = 'load_vit("me/mlp-head")' if ecosystem == "hf" else 'load_vit(snapshot_download("me/mlp-head"))'
    assert loader in text and "kind=mlp" in text and "pipeline(" not in text and "create_model(" not in text
    reloaded = load_vit(str(tmp_path / "up")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels), model(pixels))


def test_bare_model_folder_gets_a_card_without_results(hf_vit_dir, tmp_path, pixels):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForImageClassification

    result = push_run(hf_vit_dir, "me/plain", dry_run_dir=tmp_path / "up")  # save_pretrained only: no processor
    card = ModelCard.load(tmp_path / "up" / "README.md")
    assert result.what == "model" and "preprocessor_config.json" in result.files
    assert card.data.eval_results is None and card.data.library_name == "transformers"
    assert "No run metadata" in card.text and "32x32 (patch 8x8, grid 4x4)" in card.text
    processor = json.loads((tmp_path / "up" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32}
    stock = AutoModelForImageClassification.from_pretrained(tmp_path / "up").eval()
    original = AutoModelForImageClassification.from_pretrained(hf_vit_dir).eval()
    x = pixels[..., :32, :32]
    with torch.no_grad():
        torch.testing.assert_close(stock(pixel_values=x).logits, original(pixel_values=x).logits)


# --- errors ------------------------------------------------------------------------------------
def test_folder_without_a_model_names_what_is_missing(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(NoTrainedModelError, match=r"model/ and adapter/ are both missing.*found: checkpoints/, metrics.json"):
        push_run(tmp_path, "me/x", dry_run_dir=tmp_path / "up")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(NoTrainedModelError, match=r"model has config.json but no weights \(model.safetensors\)"):
        push_run(tmp_path, "me/x", dry_run_dir=tmp_path / "up")
    assert not (tmp_path / "up").exists()


def test_asking_for_what_the_run_lacks_is_an_error(hf_run, lora_run, tmp_path):
    with pytest.raises(NoTrainedModelError, match="no LoRA adapter.*--what model"):
        push_run(hf_run[0], "me/x", what="adapter", dry_run_dir=tmp_path / "a")
    with pytest.raises(NoTrainedModelError, match="no full model.*--what adapter or --what merged"):
        push_run(lora_run[0], "me/x", what="model", dry_run_dir=tmp_path / "b")
    with pytest.raises(HubError, match="'full' run with no LoRA adapter: there is nothing to merge"):
        push_run(hf_run[0], "me/x", what="merged", dry_run_dir=tmp_path / "m")
    with pytest.raises(HubError, match="not valid"):
        push_run(hf_run[0], "me/bad name", dry_run_dir=tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(HubError, match="not empty"):
        push_run(hf_run[0], "me/x", dry_run_dir=tmp_path / "d")


def test_cli_dry_run_and_error_exit(hf_run, tmp_path, capsys):
    from vit_transfer.cli import main

    assert main(["push", str(hf_run[0]), "--repo-id", "me/cli", "--dry-run", str(tmp_path / "up")]) == 0
    out = capsys.readouterr().out
    assert "model (transformers) -> me/cli: 4 files" in out and "model.safetensors" in out
    assert (tmp_path / "up" / "README.md").is_file()
    assert main(["push", str(tmp_path / "missing"), "--repo-id", "me/cli", "--dry-run", str(tmp_path / "x")]) == 2
    assert "is not a folder" in capsys.readouterr().err
