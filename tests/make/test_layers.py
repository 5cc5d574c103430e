"""The package reads as the data flow: no import runs back up a layer (issue 14).

Every ``import`` in every module — top level or inside a function — is parsed; a module may import from its own
layer or any layer below it, never from a layer above.  README's "Layout" section lists the same order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pipelines"

# Bottom to top.  Index = height; a module may import only from layers at its height or below.
LAYERS = ["core", "stats", "phenotype", "study", "eeg", "analyses", "figures", "dashboards", "synth", "make"]


def module_layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "__init__"


def imported_layers(path: Path) -> list[tuple[int, str]]:
    """(line, imported pipelines layer) for every import of another pipelines module in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package
                continue
            names = [node.module or ""]
            if node.module == "pipelines":
                names = [f"pipelines.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "pipelines" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if module_layer(p) != "__init__")


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), f"packages without a layer (or layers without a package): {packages ^ set(LAYERS)}"
    flat = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not flat, f"modules outside every layer: {flat}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_up(path):
    own = LAYERS.index(module_layer(path))
    upward = [
        f"line {line}: imports pipelines.{layer}" for line, layer in imported_layers(path) if LAYERS.index(layer) > own
    ]
    assert not upward, f"{path.relative_to(PACKAGE.parent)} ({LAYERS[own]}) imports from a higher layer: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds imports inside functions and ``from pipelines import X`` forms (so the test can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipelines import dashboards\n    import pipelines.make.build\n")
    assert [layer for _, layer in imported_layers(probe)] == ["dashboards", "make"]


def test_readme_layout_names_every_package_and_module_in_layer_order():
    """README's Layout table matches the tree: one row per layer, in LAYERS order, naming every module."""
    import re

    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme[readme.index("| layer | package | what |") :]
    table = table[: table.index("\n\n")]
    rows = [(m.group(1), line) for line in table.splitlines() if (m := re.search(r"`pipelines/(\w+)/`", line))]
    assert [layer for layer, _ in rows] == LAYERS
    for layer, line in rows:
        folder = PACKAGE / layer
        names = [p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")]
        names += [p.name for p in folder.iterdir() if (p / "__init__.py").exists()]
        missing = sorted(n for n in names if f"`{n}`" not in line)
        assert not missing, f"README's Layout row for pipelines/{layer}/ does not name {missing}"
