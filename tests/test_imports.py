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
