"""Recipes shipped in the package, found by name (as ``tune ls`` / ``tune cp`` find torchtune's).

``vit_transfer/assets/recipes`` is a link to the repository's ``recipes/``, the one source: a wheel
or sdist build copies the files in, an editable install reads them where they are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "assets" / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """Name (the file name without ``.yaml``) -> path of every shipped recipe, sorted by name."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def describe(path: Path) -> str:
    """A recipe's first comment line: what it trains, in one line."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


def resolve_recipe(recipe: "str | Path") -> Path:
    """The recipe file ``recipe`` names: an existing path wins, else a shipped name (``pets_vit_b16[.yaml]``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if path.parent == Path(".") and path.name.removesuffix(".yaml") in shipped:
        return shipped[path.name.removesuffix(".yaml")]
    raise ConfigError(f"recipe file not found: {recipe} (neither a file nor a shipped recipe; shipped: "
                      f"{', '.join(shipped)}; `vit-transfer recipes list` describes them)")


def copy_recipe(name: str, dest: "str | Path | None" = None, force: bool = False) -> Path:
    """Copy shipped recipe ``name`` to ``dest`` (a file, or a folder to put ``NAME.yaml`` in) to edit it."""
    shipped = shipped_recipes()
    source = shipped.get(name.removesuffix(".yaml"))
    if source is None:
        raise ConfigError(f"no shipped recipe named {name!r}; shipped: {', '.join(shipped)}")
    target = Path(dest if dest is not None else source.name)
    if target.is_dir() or str(dest).endswith(("/", "\\")):
        target = target / source.name
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


__all__ = ["copy_recipe", "describe", "resolve_recipe", "shipped_recipes"]
