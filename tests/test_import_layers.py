"""The package has one direction: no subpackage imports another that imports it back, at module level or
inside a function (a function-level import only hides a cycle until the function runs)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vit_transfer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """Every ``vit_transfer`` module ``path`` imports, anywhere in the file (relative imports resolved)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found += [f"{target}.{a.name}" for a in node.names] if node.module is None else [target]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [t for t in found if t.startswith("vit_transfer.")]


def layer(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: ``vit_transfer.training.loop`` -> ``training``."""
    return module.split(".")[1]


def subpackage_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        if source == "vit_transfer":
            continue  # the package's own __init__ re-exports everything: it is the top, not a layer
        for target in imported_modules(path):
            a, b = layer(source), layer(target)
            if a != b:
                edges.setdefault((a, b), []).append(f"{source} -> {target}")
    return edges


def find_cycle(edges) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_subpackages():
    edges = subpackage_edges()
    cycle = find_cycle(edges)
    if cycle:
        detail = "; ".join(f"{a} -> {b}: {edges[(a, b)][0]}" for a, b in zip(cycle, cycle[1:]))
        raise AssertionError(f"import cycle {' -> '.join(cycle)} ({detail})")


def test_no_import_cycle_between_modules():
    """Inside a subpackage too (``models.convert -> models.loading -> models.scratch -> models.convert`` was one);
    importing a package's ``__init__`` (its public names) is left aside: it is the package's top."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    edges: dict[tuple[str, str], list[str]] = {}
    for name, path in modules.items():
        if name in packages:
            continue
        for target in imported_modules(path):
            while target not in modules and "." in target:  # ``from .x import name`` -> module x
                target = target.rsplit(".", 1)[0]
            if target not in packages and target != name:
                edges.setdefault((name, target), []).append(f"{name} -> {target}")
    assert find_cycle(edges) is None, f"import cycle {' -> '.join(find_cycle(edges))}"


def test_the_cycle_finder_finds_a_cycle_and_names_its_edges():
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("c", "a"): []}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("a", "c"): []}) is None
    assert layer("vit_transfer.training.loop") == "training"
    # run.py imports lp_ft only inside train(): function-level imports are found like module-level ones
    assert "vit_transfer.training.lp_ft" in imported_modules(PACKAGE / "training" / "run.py")


def test_method_names_are_tested_only_inside_the_method_registry():
    """A method owns what is about it: no module outside ``vit_transfer/methods`` branches on a method's name
    (it asks the ``Method``: ``card_title``, ``options_section``, ``peft_type``, ``has_plain_form``, ...)."""
    import re

    from vit_transfer.methods import METHODS

    names = "|".join(METHODS)
    pattern = re.compile(rf"""method\s*[!=]=\s*["']({names})["']|["']({names})["']\s*[!=]=\s*[\w.]*method\b""")
    assert pattern.search('if run.method == "lora":') and pattern.search("'peft' != recipe.method")  # it can fail
    found = [f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if "methods" not in path.relative_to(PACKAGE).parts
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "method names tested outside the registry:\n" + "\n".join(found)
