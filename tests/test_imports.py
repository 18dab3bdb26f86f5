"""The house rule of DESIGN.md, read from the code: imports run one way, and no circles.

Every `import` and `from … import` in icurt's modules counts, at module level or inside a function
(icurt imports stage modules lazily; a lazy import is still an arrow between two modules). The graph
is at module granularity: a package's __init__.py is its own module, and `from icurt.a import b`
points at icurt/a/b.py when that is a module, else at icurt/a/__init__.py. Importing a module does
not count as importing its parent packages' __init__.py files (Python runs them, but they hold no
names the importer asked for).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "icurt"

# The layer every stage package may use and which uses none of them.
LOWER = {"icurt.config", "icurt.config_sections", "icurt.config_toml", "icurt.dataset", "icurt.files",
         "icurt.errors", "icurt.choices", "icurt.dsn", "icurt.stage_table"}
STAGE_PACKAGES = ("icurt.model", "icurt.attack", "icurt.analysis", "icurt.preprocess", "icurt.db",
                  "icurt.tuning", "icurt.stages")


def module_names() -> dict[str, Path]:
    """Every icurt module's dotted name -> its file (a package's name -> its __init__.py)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The icurt modules that module `name` (file `path`) imports -> the line of the first such import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for target in targets:
            while target and target not in modules:   # `import icurt.a.b as c` / a name inside a module
                target = target.rpartition(".")[0]
            if target.startswith("icurt") and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in sorted(modules.items())}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a closed path of module names) for each strongly connected group of modules."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:   # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in graph:
        if node not in index:
            visit(node)
    return [closed_path(graph, group) for group in groups]


def closed_path(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """A shortest circle through the group's first module (by name), found breadth first."""
    start = min(group)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if nxt in group and nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no circle through {start}")


def describe(graph: dict[str, dict[str, int]], path: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:])) + f" -> {path[-1]}"


def in_stage_package(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in STAGE_PACKAGES)


def test_no_circle_between_modules():
    graph = import_graph()
    found = [describe(graph, path) for path in cycles(graph)]
    assert not found, "circular imports:\n" + "\n".join(found)


def test_the_lower_layer_imports_no_stage_package():
    graph = import_graph()
    assert LOWER <= graph.keys(), f"the lower layer names modules that do not exist: {LOWER - graph.keys()}"
    back_up = [f"{name} line {line} imports {target}" for name in sorted(LOWER)
               for target, line in sorted(graph[name].items()) if in_stage_package(target)]
    assert not back_up, "imports from the lower layer into a stage package:\n" + "\n".join(back_up)


def test_the_checks_see_a_circle_and_an_import_back_up():
    graph = {"icurt.a": {"icurt.b": 3}, "icurt.b": {"icurt.c": 5}, "icurt.c": {"icurt.a": 7},
             "icurt.d": {"icurt.a": 1}}
    assert cycles(graph) == [["icurt.a", "icurt.b", "icurt.c", "icurt.a"]]
    assert describe(graph, ["icurt.a", "icurt.b", "icurt.c", "icurt.a"]) == (
        "icurt.a (line 3) -> icurt.b (line 5) -> icurt.c (line 7) -> icurt.a")
    assert cycles({"icurt.a": {"icurt.b": 1}, "icurt.b": {}}) == []
    assert in_stage_package("icurt.model.hparams") and in_stage_package("icurt.stages")
    assert not in_stage_package("icurt.modelling") and not in_stage_package("icurt.config")


def test_imports_are_read_at_module_and_function_level(tmp_path):
    source = tmp_path / "icurt" / "pkg"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("X = 1\n")
    (source / "low.py").write_text("import os\n")
    (source / "top.py").write_text("from icurt.pkg import low\n\n\ndef f():\n    from . import X\n"
                                   "    import icurt.pkg.low as again\n")
    modules = {"icurt.pkg": source / "__init__.py", "icurt.pkg.low": source / "low.py",
               "icurt.pkg.top": source / "top.py"}
    assert imported("icurt.pkg.top", source / "top.py", modules) == {"icurt.pkg.low": 1, "icurt.pkg": 5}


def test_every_subpackage_is_in_the_wheel():
    """pyproject.toml lists icurt's packages by hand: a new folder missing there installs (-e) but
    is absent from a built wheel."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "icurt").rglob("__init__.py")}
    assert found - listed == set()
