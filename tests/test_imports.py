"""The shape of pipeline/: no module over 400 lines, and an import graph with no circle, where every import
counts, at module level, inside a function, or under ``TYPE_CHECKING`` (a circle held together by the last
two still couples the modules in it)."""

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], package_dir: Path = PACKAGE) -> set[str]:
    """The pipeline modules ``path`` imports anywhere in it (``from .x import y`` counts ``x``, and ``x.y``
    when that is a module)."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {t for t in [target, *(f"{target}.{a.name}" for a in node.names)] if t in modules}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
    return found - {name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the pipeline modules it imports."""
    paths = {module_name(p, package): p for p in package.rglob("*.py")}
    return {name: imported_modules(path, set(paths), package) for name, path in paths.items()}


def test_pipeline_has_no_import_circle():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"an import circle in pipeline/: {' -> '.join(error.args[1])}")


def test_the_circle_check_sees_function_local_and_type_checking_imports(tmp_path):
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("from .a import A\n")
    graph = import_graph(package)
    assert graph["pipeline.a"] == {"pipeline.b"} and "pipeline.c" in graph["pipeline.b"]
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


#: a module longer than this is more than one concern (issue 36: the 719-line plan became a package of parts)
MAX_MODULE_LINES = 400


def test_no_module_is_longer_than_one_can_read_at_once():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {long}"


def function_local_imports(path: Path) -> list[tuple[str, int]]:
    """``(function, line)`` of the first import of each function's own imports in ``path``."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested = {id(node) for inner in ast.walk(function) if inner is not function
                      and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(inner)}
            lines = [node.lineno for node in ast.walk(function)
                     if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in nested]
            if lines:
                found.append((function.name, min(lines)))
    return found


def uncommented_local_imports(package: Path = PACKAGE) -> list[str]:
    missing = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text().splitlines()
        missing += [f"{path.relative_to(package.parent)}:{line} ({function})"
                    for function, line in function_local_imports(path)
                    if not lines[line - 2].strip().startswith("#") and "#" not in lines[line - 1]]
    return missing


def test_every_function_local_import_says_why_it_is_not_at_the_top():
    """Issue 36: an import inside a function is there to keep something heavy (torch at parse time, a
    library a step does not need at its start-up) out; the comment above it says what."""
    missing = uncommented_local_imports()
    assert not missing, f"function-local imports without a comment saying why: {missing}"


def test_the_local_import_check_finds_one_without_a_comment(tmp_path):
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    # torch: not at parse time\n    import torch\n\n\n"
                                  "def g():\n    x = 1\n    import json\n")
    assert uncommented_local_imports(package) == ["pipeline/a.py:8 (g)"]
