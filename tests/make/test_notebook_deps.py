"""The Makefile's notebook-to-notebook prerequisites come from one declaration (issue 14), and that declaration
matches what the analyses actually read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipelines.make import notebook_deps
from pipelines.study import derived

REPO = Path(__file__).resolve().parents[2]


def tables_read_by(path: Path) -> set[str]:
    """Literal table names passed to ``read_table(study, "<name>")`` in a module (and its TABLES constant)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "read_table":
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


@pytest.mark.parametrize("module", sorted((REPO / "pipelines" / "analyses").glob("[a-z]*.py")), ids=lambda p: p.stem)
def test_declared_readers_cover_every_table_an_analysis_reads(module):
    notebooks = [p.stem for p in (REPO / "notebooks").glob(f"[0-9][0-9]_{module.stem}.ipynb")]
    assert len(notebooks) == 1, f"analysis {module.stem} is not named after exactly one notebook: {notebooks}"
    read = tables_read_by(module)
    declared = set(derived.READERS.get(notebooks[0], ()))
    assert read <= declared, f"{module.name} reads {sorted(read - declared)} not declared in derived.READERS"


def test_declarations_equal_the_imported_module():
    decl = notebook_deps.declarations()
    assert decl["PRODUCERS"] == derived.PRODUCERS
    assert decl["READERS"] == derived.READERS
    assert tuple(decl["FEATURE_READERS"]) == derived.FEATURE_READERS


def test_rules_follow_the_declaration():
    rules = notebook_deps.makefile_rules(notebook_deps.declarations())
    line = next(r for r in rules.splitlines() if r.startswith("$(REPORTS)/04_integrative_summary.html:"))
    upstream = set(re.findall(r"\$\(REPORTS\)/(\d\d_[a-z_]+)\.html,", line))
    assert upstream == {derived.PRODUCERS[t] for t in derived.READERS["04_integrative_summary"]}
    assert "$(FEATURES)" in line


def test_a_table_nobody_writes_is_refused():
    decl = notebook_deps.declarations()
    decl["READERS"] = {**decl["READERS"], "04_integrative_summary": ("no_such_table",)}
    with pytest.raises(SystemExit, match="no_such_table"):
        notebook_deps.makefile_rules(decl)
