"""The recipes ship inside the package: found by name, listed, copied, and taken by ``train``/``probe``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from vit_transfer.cli import main
from vit_transfer.config import load_recipe
from vit_transfer.errors import ConfigError
from vit_transfer.probe import ProbeRecipe
from vit_transfer.recipes import resolve_recipe, shipped_recipes
from vit_transfer.training import load_train_recipe

TOP_LEVEL = Path(__file__).resolve().parent.parent / "recipes"
SOURCES = sorted(TOP_LEVEL.glob("*.yaml"))


def test_package_resources_hold_every_top_level_recipe_byte_for_byte():
    shipped = files("vit_transfer") / "assets" / "recipes"
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".yaml")) == [p.name for p in SOURCES]
    for source in SOURCES:
        assert (shipped / source.name).read_bytes() == source.read_bytes(), source.name
    assert list(shipped_recipes()) == [p.stem for p in SOURCES]


def test_a_built_wheel_carries_every_recipe_byte_for_byte(tmp_path):
    """Defect: package-data named a path that matched nothing, so wheels shipped no recipe."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(TOP_LEVEL.parent, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "quickstart-output", "runs", "outputs", ".venv"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(src), "-w", str(tmp_path / "wheel")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))) as wheel:
        inside = {Path(n).name: wheel.read(n) for n in wheel.namelist() if n.startswith("vit_transfer/assets/recipes/")}
    assert inside == {p.name: p.read_bytes() for p in SOURCES}


def test_recipes_list_prints_each_name_with_its_first_comment_line(capsys):
    assert main(["recipes", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SOURCES)
    for line, source in zip(lines, SOURCES):
        first_comment = next(x for x in source.read_text().splitlines() if x.startswith("#"))
        name, description = line.split(None, 1)
        assert name == source.stem
        assert description == first_comment.lstrip("# ").strip()
    assert any(line.startswith("pets_vit_b16 ") and "Oxford-IIIT Pets" in line for line in lines)


def test_recipes_copy_writes_identical_bytes_and_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    source = TOP_LEVEL / "pets_lora_vit_b16.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["recipes", "copy", "pets_lora_vit_b16"]) == 0  # default: ./NAME.yaml
    assert (tmp_path / "pets_lora_vit_b16.yaml").read_bytes() == source.read_bytes()
    assert main(["recipes", "copy", "pets_lora_vit_b16.yaml", "sub/"]) == 0  # a folder (made), NAME.yaml inside
    assert (tmp_path / "sub" / "pets_lora_vit_b16.yaml").read_bytes() == source.read_bytes()
    mine = tmp_path / "mine.yaml"
    mine.write_text("# edited\n")
    capsys.readouterr()
    assert main(["recipes", "copy", "pets_lora_vit_b16", str(mine)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and mine.read_text() == "# edited\n"
    assert main(["recipes", "copy", "pets_lora_vit_b16", str(mine), "--force"]) == 0
    assert mine.read_bytes() == source.read_bytes()
    assert main(["recipes", "copy", "pets_vit_b1"]) == 2
    err = capsys.readouterr().err
    assert "no shipped recipe named 'pets_vit_b1'" in err and "pets_vit_b16_timm" in err


def test_a_name_resolves_to_the_shipped_recipe_and_an_existing_path_wins(tmp_path, monkeypatch):
    shipped = shipped_recipes()["pets_vit_b16"]
    assert resolve_recipe("pets_vit_b16") == shipped == resolve_recipe("pets_vit_b16.yaml")
    by_name, by_path = load_train_recipe("pets_vit_b16"), load_train_recipe(TOP_LEVEL / "pets_vit_b16.yaml")
    assert by_name == by_path and by_name.train.max_steps == 500
    probe = load_recipe("linear_probe_cifar100", ["probe.pooling=mean"], ProbeRecipe)
    assert probe.probe.pooling == "mean" and probe.model.source == "google/vit-base-patch16-224-in21k"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets_vit_b16.yaml").write_text(yaml.safe_dump({"train": {"max_steps": 7}}))
    assert resolve_recipe("pets_vit_b16.yaml") == Path("pets_vit_b16.yaml")  # the user's own file wins
    assert load_train_recipe("pets_vit_b16.yaml").train.max_steps == 7
    with pytest.raises(ConfigError, match=r"not found: pets_vit_b1 .*shipped: .*pets_vit_b16, pets_vit_b16_timm"):
        resolve_recipe("pets_vit_b1")
    with pytest.raises(ConfigError, match="not found: elsewhere/pets_vit_b16.yaml"):
        resolve_recipe("elsewhere/pets_vit_b16.yaml")  # a path with folders is a path, never a name


def test_train_takes_a_shipped_name(capsys):
    assert main(["train", "pets_lora_vit_b16", "lora.r=4", "--print-recipe"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"] == "lora" and printed["lora"]["r"] == 4
    assert main(["train", "no_such_recipe", "--print-recipe"]) == 2
    assert "shipped: cifar100_vit_b16" in capsys.readouterr().err
