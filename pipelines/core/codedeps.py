"""Which ``pipelines`` source files a notebook or step depends on, found by following imports.

Make sees file dates only; we hash the parameters and the code a target really depends on, so that
editing one module reruns exactly the reports that import it (directly or through other modules).
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from pipelines.core.paths import REPO_ROOT

PACKAGE = "pipelines"
PACKAGE_DIR = REPO_ROOT / PACKAGE


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = REPO_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(source: str, current: str | None = None) -> set[str]:
    """Names of ``pipelines`` modules imported by ``source`` (relative imports resolved against ``current``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # Notebook cells may hold IPython magics; drop those lines and try again.
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level and current:
                # current is "pkg.mod" for a module and "pkg.__init__" for a package: dropping `level`
                # trailing parts gives the package the import is relative to in both cases.
                base = current.split(".")[: -node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != PACKAGE:
                continue
            found.add(module)
            # `from pipelines import stats` imports the submodule pipelines.stats
            found.update(f"{module}.{alias.name}" for alias in node.names if _module_file(f"{module}.{alias.name}"))
    # Every parent package's __init__ runs too.
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def module_closure(roots: set[str]) -> list[Path]:
    """Source files of ``roots`` and everything they import inside the package, sorted."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        current = name if path.name != "__init__.py" else name + ".__init__"
        todo.extend(imported_modules(path.read_text(), current) - seen.keys())
    return sorted(set(seen.values()))


def notebook_code(path: Path) -> str:
    nb = json.loads(Path(path).read_text())
    return "\n".join("".join(c["source"]) for c in nb.get("cells", []) if c.get("cell_type") == "code")


def notebook_dependencies(path: Path) -> list[Path]:
    return module_closure(imported_modules(notebook_code(path)))


def hash_files(paths: list[Path]) -> dict[str, str]:
    return {
        Path(p).resolve().relative_to(REPO_ROOT).as_posix(): hashlib.sha256(Path(p).read_bytes()).hexdigest()
        for p in paths
    }
