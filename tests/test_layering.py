"""The package's layering, read from the source with `ast` (nothing is imported).

The layers, lowest first: `fractal.lang` (0), `fractal.analysis` (1), `fractal.lower` (2),
`fractal.backends` (3), the top-level modules `fractal/*.py` (4), which wire the stages
together, and `fractal.testing` (5), the users' testing tools built on all of them (`ft.testing`
loads it lazily, by name: hypothesis is optional).  A module may import its own layer and the layers below it, never one above, and
no chain of imports between fractal modules may lead back to where it started.  Both rules
cover every import: at module level and inside functions, relative and absolute, since a
late import inside a method still ties the lower layer to the upper one.
"""

from __future__ import annotations

import ast
import functools
import pathlib
from collections import deque
from typing import NamedTuple

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fractal"
LAYERS = {"lang": 0, "analysis": 1, "lower": 2, "backends": 3, "testing": 5}
TOP = 4  # fractal/__init__.py, compile.py, cli.py, __main__.py
LAYER_NAMES = {0: "lang", 1: "analysis", 2: "lower", 3: "backends", 4: "top level", 5: "testing"}


class Import(NamedTuple):
    line: int
    written: str  # the statement as written, e.g. `from ..analysis import analyze`
    target: str  # the fractal module it loads, e.g. `fractal.analysis`


class Cycle(NamedTuple):
    path: list[str]  # a shortest cycle, `[a, b, ..., a]`
    group: list[str]  # every module that imports, and is imported by, the modules of `path`

    def __str__(self) -> str:
        text = " -> ".join(self.path)
        if len(self.group) > len(self.path) - 1:
            text += f"  (one cycle among {len(self.group)} modules that import each other: {', '.join(self.group)})"
        return text


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else TOP


def package_modules(root: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
    """Module name -> file, for every module of the package at `root` (`fractal.lang.ir`)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


@functools.lru_cache(maxsize=None)
def _import_statements(path: pathlib.Path) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """Every import statement of a file, at any depth (parsed once per test session)."""
    tree = ast.parse(path.read_text(), str(path))
    return tuple(node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def imports(name: str, modules: dict[str, pathlib.Path]) -> list[Import]:
    """The imports of fractal modules in module `name`.  `from pkg import x` loads the module
    `pkg.x` when there is one, else `pkg` itself."""
    path = modules[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _import_statements(path):
        if isinstance(node, ast.Import):
            found |= {Import(node.lineno, f"import {a.name}", a.name) for a in node.names if a.name in modules}
            continue
        base = node.module or ""
        if node.level:  # relative: `.` is this module's package, each further dot one package up
            above = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            base = ".".join(above + ([node.module] if node.module else []))
        written = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
        for alias in node.names:
            target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            if target in modules:
                found.add(Import(node.lineno, written, target))
    return sorted(found)


def upward_imports(modules: dict[str, pathlib.Path]) -> list[str]:
    """One message per import of a higher layer: file, line, the import, the two layers."""
    problems = []
    for name, path in modules.items():
        for imp in imports(name, modules):
            if layer(imp.target) > layer(name):
                where = path.relative_to(modules["fractal"].parent.parent)
                problems.append(f"{where}:{imp.line}: `{imp.written}` — {name} ({LAYER_NAMES[layer(name)]}) "
                                f"imports {imp.target} ({LAYER_NAMES[layer(imp.target)]}), a higher layer")
    return problems


def import_cycles(modules: dict[str, pathlib.Path]) -> list[Cycle]:
    """One shortest cycle per group of modules that import each other, through its first module."""
    graph = {name: sorted({imp.target for imp in imports(name, modules)} - {name}) for name in modules}
    reach = {name: _reachable(graph, name) for name in graph}
    cycles, seen = [], set()
    for name in sorted(graph):
        if name in reach[name] and name not in seen:
            group = {other for other in reach[name] if name in reach[other]}
            seen |= group
            cycles.append(Cycle(_shortest_path(graph, name, name), sorted(group)))
    return cycles


def _reachable(graph: dict[str, list[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others (itself only through a cycle)."""
    found, todo = set(), list(graph[start])
    while todo:
        node = todo.pop()
        if node not in found:
            found.add(node)
            todo.extend(graph[node])
    return found


def _shortest_path(graph: dict[str, list[str]], start: str, goal: str) -> list[str]:
    """Breadth first from `start` to `goal` along imports (at least one step)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph[node]:
            if nxt == goal:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1] + [goal]
            if nxt not in previous and nxt != start:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no path from {start} to {goal}")


# ---- the package itself


def test_no_module_imports_a_higher_layer():
    problems = upward_imports(package_modules())
    if problems:
        pytest.fail("imports of a higher layer:\n" + "\n".join(problems), pytrace=False)


def test_no_import_cycle_between_fractal_modules():
    cycles = import_cycles(package_modules())
    if cycles:
        pytest.fail("import cycles:\n" + "\n".join(map(str, cycles)), pytrace=False)


@pytest.mark.parametrize("module, expected", [
    ("fractal.lang", 0), ("fractal.lang.ir", 0), ("fractal.analysis.etdg", 1), ("fractal.lower.tile_ir", 2),
    ("fractal.backends.cpu.ops", 3), ("fractal.compile", 4), ("fractal", 4),
    ("fractal.testing", 5), ("fractal.testing.check", 5), ("fractal.testing.strategies", 5)])
def test_every_module_maps_to_its_layer(module, expected):
    assert module in package_modules() and layer(module) == expected


# ---- the checker, on small packages written for the test


def write_package(tmp_path: pathlib.Path, files: dict[str, str]) -> dict[str, pathlib.Path]:
    """A package `fractal` under `tmp_path` with these files (and the `__init__.py`s they need)."""
    for rel, text in {"fractal/__init__.py": "", **files}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for folder in path.relative_to(tmp_path).parents[:-1]:
            (tmp_path / folder / "__init__.py").touch()
    return package_modules(tmp_path / "fractal")


def test_a_late_import_of_a_higher_layer_is_reported_with_file_line_and_import(tmp_path):
    modules = write_package(tmp_path, {
        "fractal/lang/function.py": "def analyze(f):\n    from ..analysis import analyze\n",
        "fractal/analysis/__init__.py": "",
    })
    assert upward_imports(modules) == [
        "fractal/lang/function.py:2: `from ..analysis import analyze` — fractal.lang.function (lang) "
        "imports fractal.analysis (analysis), a higher layer"]


def test_an_absolute_import_of_the_top_level_is_reported(tmp_path):
    modules = write_package(tmp_path, {"fractal/lower/tile_ir.py": "import fractal.compile\n",
                                       "fractal/compile.py": ""})
    assert upward_imports(modules) == [
        "fractal/lower/tile_ir.py:1: `import fractal.compile` — fractal.lower.tile_ir (lower) imports "
        "fractal.compile (top level), a higher layer"]


def test_imports_of_the_same_or_a_lower_layer_are_allowed(tmp_path):
    modules = write_package(tmp_path, {
        "fractal/lower/tile_ir.py": "from ..lang import errors\nfrom .tile_affine import Aff\n",
        "fractal/lower/tile_affine.py": "",
        "fractal/lang/errors.py": "",
        "fractal/compile.py": "from .lower.tile_ir import TileProgram\nimport fractal.lang.errors\n",
    })
    assert upward_imports(modules) == [] and import_cycles(modules) == []


def test_the_top_level_importing_the_testing_layer_is_reported(tmp_path):
    modules = write_package(tmp_path, {"fractal/compile.py": "from .testing import check\n",
                                       "fractal/testing/__init__.py": "", "fractal/testing/check.py": ""})
    assert upward_imports(modules) == [
        "fractal/compile.py:1: `from .testing import check` — fractal.compile (top level) imports "
        "fractal.testing.check (testing), a higher layer"]


def test_imports_outside_the_package_are_ignored(tmp_path):
    modules = write_package(tmp_path, {"fractal/lang/a.py": "import numpy\nfrom typing import Any\n"})
    assert imports("fractal.lang.a", modules) == []


def test_a_cycle_closed_by_a_late_import_is_reported_as_a_path(tmp_path):
    modules = write_package(tmp_path, {
        "fractal/lower/tile_ir.py": "class Loop:\n    def __str__(self):\n        from . import tile_printer\n",
        "fractal/lower/tile_printer.py": "from .tile_ir import Loop\n",
    })
    (cycle,) = import_cycles(modules)
    assert cycle.path == ["fractal.lower.tile_ir", "fractal.lower.tile_printer", "fractal.lower.tile_ir"]
    assert str(cycle) == "fractal.lower.tile_ir -> fractal.lower.tile_printer -> fractal.lower.tile_ir"


def test_a_longer_cycle_is_reported_once_through_every_module(tmp_path):
    modules = write_package(tmp_path, {
        "fractal/lang/a.py": "from . import b\n",
        "fractal/lang/b.py": "from .c import thing\n",
        "fractal/lang/c.py": "import fractal.lang.a\n",
        "fractal/lang/d.py": "from .a import x\n",  # imports into the cycle, is not part of it
    })
    (cycle,) = import_cycles(modules)
    assert cycle.path == ["fractal.lang.a", "fractal.lang.b", "fractal.lang.c", "fractal.lang.a"]
    assert cycle.group == ["fractal.lang.a", "fractal.lang.b", "fractal.lang.c"]


def test_a_group_of_modules_importing_each_other_is_named_beside_its_cycle(tmp_path):
    modules = write_package(tmp_path, {
        "fractal/lang/a.py": "from . import b, c\n",
        "fractal/lang/b.py": "from . import a\n",
        "fractal/lang/c.py": "from . import a\n",
    })
    assert [str(c) for c in import_cycles(modules)] == [
        "fractal.lang.a -> fractal.lang.b -> fractal.lang.a  (one cycle among 3 modules that import each "
        "other: fractal.lang.a, fractal.lang.b, fractal.lang.c)"]
