"""No function over 80 lines outside the generator (issue 14).

Every module under ``pipelines/`` is parsed; a function (top level, method or nested) is measured from its ``def``
line to its last line, decorators and its docstring not counted (comments and blank lines inside count).
``pipelines/synth/`` (the synthetic-study generator) is exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipelines"
MAX_LINES = 80
EXEMPT = ("synth",)  # pipelines/synth/: the generator writes a whole study in a few long, linear recipes


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's last line, without its docstring."""
    lines = node.end_lineno - node.lineno + 1
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def function_lengths(source: str, module: str) -> dict[str, int]:
    """``"module:qualified.name"`` → lines (:func:`function_lines`) of every function in ``source``."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found[f"{module}:{prefix}{child.name}"] = function_lines(child)
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def long_functions(package: Path) -> dict[str, int]:
    """Every function over :data:`MAX_LINES` in ``package``, outside the exempt folders."""
    long = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        if relative.parts[1] in EXEMPT:
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        long.update({name: n for name, n in function_lengths(path.read_text(), module).items() if n > MAX_LINES})
    return long


def test_no_function_is_longer_than_80_lines():
    offenders = long_functions(PACKAGE)
    assert not offenders, (
        f"functions over {MAX_LINES} lines (docstring not counted); split them into named steps: "
        + ", ".join(f"{name} ({n})" for name, n in sorted(offenders.items()))
    )


def _function(name: str, body_lines: int, docstring_lines: int = 0, indent: str = "") -> str:
    """A function whose measured length is ``1 + body_lines`` (the ``def`` line and its body)."""
    doc = [f'{indent}    """Docstring'] + [f"{indent}    line {i}" for i in range(docstring_lines - 2)]
    doc = doc + [f'{indent}    """'] if docstring_lines else []
    body = [f"{indent}    x{i} = {i}" for i in range(body_lines)]
    return "\n".join([f"{indent}def {name}():", *doc, *body]) + "\n"


def test_the_counter_fails_on_a_planted_long_function(tmp_path):
    """The measure counts what it says (the docstring is not counted, 80 lines pass and 81 fail) and finds long
    methods, nested functions and functions in any layer but the generator."""
    source = (
        _function("exactly_80", 79, docstring_lines=30)
        + _function("planted_81", 80)
        + "class Model:\n"
        + "    @staticmethod\n"
        + _function("fit", 90, indent="    ")
        + "def outer():\n"
        + _function("inner", 85, indent="    ")
    )
    lengths = function_lengths(source, "probe")
    assert lengths["probe:exactly_80"] == 80 and lengths["probe:planted_81"] == 81
    assert lengths["probe:Model.fit"] == 91 and lengths["probe:outer.inner"] == 86 and lengths["probe:outer"] == 87

    package = tmp_path / "pipelines"
    for layer in ("stats", "synth"):
        (package / layer).mkdir(parents=True)
        (package / layer / "__init__.py").write_text("")
        (package / layer / "probe.py").write_text(source)
    found = long_functions(package)
    assert set(found) == {
        "pipelines.stats.probe:planted_81",
        "pipelines.stats.probe:Model.fit",
        "pipelines.stats.probe:outer",
        "pipelines.stats.probe:outer.inner",
    }  # 80 lines pass; the generator's copy is exempt
