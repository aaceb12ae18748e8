"""No silent surprises in the defaults: a run's length is one stated thing, logging asked for is logging done or
a warning, the template's precision advice holds on any CPU, and a data path that is not there says so."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import yaml

from vit_transfer.errors import ConfigError, DataError
from vit_transfer.training import load_train_recipe
from vit_transfer.training.config import DEFAULT_MAX_STEPS, TrainConfig

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TEMPLATE = RECIPES / "custom_imagefolder.yaml"


# --- run length: max_steps or epochs, never both ---------------------------------------------------
def test_epochs_alone_set_the_length():
    cfg = TrainConfig(epochs=3)
    assert (cfg.max_steps, cfg.epochs) == (None, 3)


def test_neither_gives_the_documented_default():
    assert (TrainConfig().max_steps, TrainConfig().epochs) == (DEFAULT_MAX_STEPS, None) == (1000, None)


def test_both_are_an_error_naming_both_keys():
    with pytest.raises(ConfigError, match=r"train\.max_steps.*train\.epochs.*null"):
        TrainConfig(max_steps=100, epochs=3)


def test_a_recipe_setting_both_fails_when_read(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"source": "vit-transfer/fashion-vit-tiny"},
                                      "data": {"source": "fashion-mnist"}, "train": {"max_steps": 50, "epochs": 2}}))
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_train_recipe(recipe)


def test_the_template_runs_by_epochs_once_max_steps_is_cleared():
    with pytest.raises(ConfigError, match=r"train\.max_steps=null"):  # the error says how
        load_train_recipe(TEMPLATE, ["train.epochs=5"])
    recipe = load_train_recipe(TEMPLATE, ["train.max_steps=null", "train.epochs=5"])
    assert (recipe.train.max_steps, recipe.train.epochs) == (None, 5)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_no_shipped_recipe_sets_both(path):
    train = yaml.safe_load(path.read_text()).get("train", {})
    assert train.get("max_steps") is None or train.get("epochs") is None


# --- precision advice in the template ---------------------------------------------------------------
def test_the_template_recommends_auto_precision_not_bf16_on_any_cpu():
    text = TEMPLATE.read_text()
    line = next(l for l in text.splitlines() if l.strip().startswith("precision:"))
    assert "also works on CPU" not in line and "auto" in line
    assert load_train_recipe(TEMPLATE).train.precision == "auto"


# --- logging asked for ------------------------------------------------------------------------------------
def test_tensorboard_logging_without_tensorboard_warns(tmp_path, monkeypatch):
    from vit_transfer.runtime import accelerator as acc_module

    monkeypatch.setattr(acc_module, "tensorboard_available", lambda: False)
    expected = r"output\.log_with=tensorboard.*pip install tensorboard.*output\.log_with=none"
    with pytest.warns(UserWarning, match=expected):
        acc = acc_module.make_accelerator(log_with="tensorboard", project_dir=tmp_path)
    assert acc.log_with == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        acc_module.make_accelerator(log_with="none", project_dir=tmp_path)


# --- a data path that is not there ---------------------------------------------------------------------
def test_a_missing_relative_data_path_says_it_was_tried_as_a_path_and_as_a_hub_id(tmp_path, monkeypatch):
    from vit_transfer.data import DataConfig, load_image_datasets

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as caught:
        load_image_datasets(DataConfig(source="my_data/pets"))
    message = str(caught.value)
    assert f"local path {tmp_path / 'my_data' / 'pets'} does not exist" in message
    assert "Hub dataset id 'my_data/pets'" in message
    assert "offline" in message  # the tests run with HF_DATASETS_OFFLINE=1: the reason it failed is named
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"
