"""Every shipped training recipe parses, states the ViT paper protocol, and bad recipes fail fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vit_transfer.cli import main
from vit_transfer.config import to_dict
from vit_transfer.errors import ConfigError
from vit_transfer.training import TrainRecipe, load_train_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TRAIN_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if not p.name.startswith("linear_probe_"))


def assert_contains(parsed, written, key: str = "") -> None:
    if isinstance(written, dict):
        for name, value in written.items():
            assert_contains(parsed[name], value, f"{key}.{name}" if key else name)
    else:
        assert parsed == written, key


def test_the_expected_recipes_ship():
    names = {p.name for p in TRAIN_RECIPES}
    assert {"cifar100_vit_b16.yaml", "pets_vit_b16.yaml", "pets_vit_b16_timm.yaml", "pets_lora_vit_b16.yaml",
            "custom_imagefolder.yaml"} <= names


@pytest.mark.parametrize("path", TRAIN_RECIPES, ids=lambda p: p.name)
def test_every_recipe_parses_with_the_schema(path):
    recipe = load_train_recipe(path)
    assert isinstance(recipe, TrainRecipe)
    # every value written in the file landed in the recipe (nothing silently defaulted)
    assert_contains(to_dict(recipe), yaml.safe_load(path.read_text()))
    assert recipe.train.batch_size % recipe.train.grad_accum_steps == 0


@pytest.mark.parametrize("name, steps, warmup, source, columns, val", [
    ("cifar100_vit_b16.yaml", 10_000, 500, "uoft-cs/cifar100", ("img", "fine_label"), 0.02),
    ("pets_vit_b16.yaml", 500, 100, "timm/oxford-iiit-pet", ("image", "label"), 0.1),
    ("pets_vit_b16_timm.yaml", 500, 100, "timm/oxford-iiit-pet", ("image", "label"), 0.1),
])
def test_paper_protocol_recipes(name, steps, warmup, source, columns, val):
    r = load_train_recipe(RECIPES / name)
    assert (r.optim.name, r.optim.momentum, r.optim.weight_decay, r.optim.clip_grad_norm) == ("sgd", 0.9, 0.0, 1.0)
    assert r.optim.lr == 0.01 and r.train.batch_size == 512
    assert (r.schedule.name, r.schedule.warmup_steps, r.train.max_steps) == ("cosine", warmup, steps)
    assert r.model.image_size == 384 and r.model.head_init == "zeros" and r.method == "full"
    assert (r.data.source, r.data.image_column, r.data.label_column, r.data.val_fraction) == (source, *columns, val)
    assert r.data.test_split == "test"
    expected_model = "timm/vit_base_patch16_224.augreg_in21k" if "timm" in name else "google/vit-base-patch16-224-in21k"
    assert r.model.source == expected_model
    assert "timm/vit_base_patch16_224.augreg_in21k" in (RECIPES / "cifar100_vit_b16.yaml").read_text()


def test_lora_recipe():
    r = load_train_recipe(RECIPES / "pets_lora_vit_b16.yaml")
    assert r.method == "lora" and r.lora.merge and r.lora.r == 8 and r.lora.target_modules is None


@pytest.mark.parametrize("overrides, key", [
    (["optim.lrr=0.1"], "optim.lrr"),
    (["train.max_steps=ten"], "train.max_steps"),
    (["train.precision=fp8"], "train.precision"),
    (["lora.rank=4"], "lora.rank"),
    (["optim.clip_grad_norm=[1]"], "optim.clip_grad_norm"),
    (["output.push_to_hub=true"], "output.hub_repo_id"),
    (["train.batch_size=0"], "train.batch_size"),
])
def test_bad_overrides_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_train_recipe(RECIPES / "pets_vit_b16.yaml", overrides)


def test_yaml_booleans_read_as_the_choice_they_spell(tmp_path):
    # YAML 1.1 reads `no` as false: `train.precision=no` (and `precision: no` in a file) must still work
    assert load_train_recipe(RECIPES / "pets_vit_b16.yaml", ["train.precision=no"]).train.precision == "no"
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  precision: no\n")
    assert load_train_recipe(path).train.precision == "no"
    with pytest.raises(ConfigError, match=r"train\.precision must be one of"):
        load_train_recipe(path, ["train.precision=yes"])  # no `yes` among the choices: still an error


def test_unknown_key_inside_the_file_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown recipe key 'optim.learning_rate'"):
        load_train_recipe(path)
    path.write_text("scheduler:\n  warmup_steps: 10\n")
    with pytest.raises(ConfigError, match=r"'scheduler'; did you mean 'schedule'"):
        load_train_recipe(path)


def test_cli_fails_before_building_anything(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", str(RECIPES / "pets_vit_b16.yaml"), f"output.dir={out}", "optim.lrr=0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "did you mean 'optim.lr'" in err
    assert not out.exists()  # no folder, no model download, no data: it failed at the recipe


def test_cli_prints_the_resolved_recipe(capsys):
    assert main(["train", str(RECIPES / "pets_vit_b16.yaml"), "optim.lr=0.003", "--print-recipe"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.003 and printed["train"]["max_steps"] == 500
