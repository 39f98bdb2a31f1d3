"""The package's shape, read from its source (nothing of `pipeline` is imported here): no import
cycles between its modules, and no module uses another module's private (`_name`) names.

The import graph has one edge per import statement of a module of the package, wherever it
stands (at the top, in a function, under `if TYPE_CHECKING:`): a lazy import hides a cycle from
the interpreter, not from the design. `import a.b.c` and `from a.b import c` (c a submodule) are
edges to `a.b.c` only; the packages `a` and `a.b` that Python runs on the way are not counted.
`from a.b import name` (name not a submodule) is an edge to `a.b`.

The tests of the checker itself run it on small packages written to a temporary folder.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"


@dataclass(frozen=True)
class Edge:
    importer: str  # module name, e.g. "pipeline.run"
    imported: str  # module name, e.g. "pipeline.plan"
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.file}:{self.line})"


@dataclass(frozen=True)
class PrivateUse:
    file: Path
    line: int
    what: str  # e.g. "from pipeline.run import _check"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_files(package: Path) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its folder's name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


class _Module:
    """One module's source: the imports it makes and the private names it reaches into."""

    def __init__(self, name: str, path: Path, modules: dict[str, Path], shown: Path):
        self.name, self.path, self.modules, self.shown = name, path, modules, shown
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.edges: list[Edge] = []
        self.private: list[PrivateUse] = []
        self.bound: dict[str, str] = {}  # local name -> package module it is bound to

    def deepest(self, dotted: str) -> str | None:
        """The longest prefix of `dotted` that is a module of the package (None: not ours)."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in self.modules:
                return candidate
        return None

    def base_of(self, node: ast.ImportFrom) -> str | None:
        """The module a `from X import ...` reads from, relative imports resolved."""
        if node.level == 0:
            return node.module
        package = self.name.split(".")
        if self.path.name != "__init__.py":
            package = package[:-1]  # a plain module's package
        if node.level - 1 > len(package) - 1:
            return None  # above the top package: an error at run time, not ours to resolve
        package = package[: len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else []))

    def edge(self, imported: str, line: int) -> None:
        if imported != self.name:
            self.edges.append(Edge(self.name, imported, self.shown, line))

    def scan(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = self.deepest(alias.name)
                    if target is None:
                        continue
                    self.edge(target, node.lineno)
                    if alias.asname:
                        self.bound[alias.asname] = target
                    else:  # `import a.b.c` binds `a`, through which a.b.c is reached
                        self.bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom):
                base = self.base_of(node)
                if base is None or self.deepest(base) is None:
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in self.modules:
                        self.edge(submodule, node.lineno)
                        self.bound[alias.asname or alias.name] = submodule
                    else:
                        self.edge(self.deepest(base) or base, node.lineno)
                    if is_private(alias.name) and base != self.name:
                        self.private.append(
                            PrivateUse(self.shown, node.lineno, f"from {base} import {alias.name}")
                        )
        # `module._name` where `module` names a module of the package (imported above).
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and is_private(node.attr):
                owner = self.dotted(node.value)
                if owner is not None and owner in self.modules and owner != self.name:
                    self.private.append(PrivateUse(self.shown, node.lineno, f"{owner}.{node.attr}"))

    def dotted(self, node: ast.expr) -> str | None:
        """`a.b.c` as the module it names, its first name resolved through the imports."""
        names = []
        while isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.bound:
            return None
        return ".".join([self.bound[node.id], *reversed(names)])


def scan(package: Path) -> tuple[list[Edge], list[PrivateUse]]:
    """The import edges and private-name uses of every module of the package."""
    modules = module_files(package)
    edges, private = [], []
    for name, path in modules.items():
        module = _Module(name, path, modules, path.relative_to(package.parent))
        module.scan()
        edges += module.edges
        private += module.private
    return edges, private


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle per strongly connected group of modules (Tarjan), as the edges that close it,
    shortest first from the group's first module in name order."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.importer, {}).setdefault(e.imported, e)
        graph.setdefault(e.imported, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # recursion depth: the package's module count
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for group in sorted(groups):
        members, start = set(group), group[0]
        # Breadth-first from `start` inside the group back to `start`: a shortest cycle.
        paths: dict[str, list[Edge]] = {start: []}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            nxt = []
            for v in frontier:
                for w, e in sorted(graph[v].items()):
                    if w == start:
                        cycle = paths[v] + [e]
                        break
                    if w in members and w not in paths:
                        paths[w] = paths[v] + [e]
                        nxt.append(w)
                if cycle is not None:
                    break
            frontier = nxt
        assert cycle is not None  # a strongly connected group always has one
        found.append(cycle)
    return found


def describe(cycle: list[Edge]) -> str:
    names = " -> ".join([cycle[0].importer] + [e.imported for e in cycle])
    return f"import cycle {names}:\n" + "\n".join(f"    {e}" for e in cycle)


# --- the package -----------------------------------------------------------------------------


def test_the_package_has_no_import_cycles():
    edges, _ = scan(PACKAGE)
    assert edges, "no imports found: is PACKAGE the package folder?"
    found = cycles(edges)
    assert not found, "\n".join(describe(c) for c in found)


def test_no_module_uses_another_modules_private_names():
    _, private = scan(PACKAGE)
    assert not private, "private names used from another module:\n" + "\n".join(
        f"    {p}" for p in private
    )


# --- the checker, on small packages ----------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    """`files` maps paths inside the package `fake` to their source."""
    for rel, text in files.items():
        path = root / "fake" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "fake"


def test_checker_resolves_relative_absolute_and_submodule_imports(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "class Error(Exception): ...\n",
            "a.py": "from . import Error\nfrom .sub import b\nimport os\n",
            "sub/__init__.py": "",
            "sub/b.py": "from ..c import value\nimport fake.d\nimport fake.sub.e as e\n",
            "sub/e.py": "from . import f\n",
            "sub/f.py": "def g():\n    from fake import a as the_a\n",
            "c.py": "value = 1\n",
            "d.py": "",
        },
    )
    edges, private = scan(package)
    found = {(e.importer, e.imported) for e in edges}
    assert found == {
        ("fake.a", "fake"),  # a name of the package's __init__
        ("fake.a", "fake.sub.b"),  # a submodule, not the package fake.sub
        ("fake.sub.b", "fake.c"),
        ("fake.sub.b", "fake.d"),
        ("fake.sub.b", "fake.sub.e"),
        ("fake.sub.e", "fake.sub.f"),
        ("fake.sub.f", "fake.a"),  # inside a function
    }
    lines = {(e.importer, e.imported): e.line for e in edges}
    assert lines[("fake.sub.b", "fake.d")] == 2
    assert lines[("fake.sub.f", "fake.a")] == 2
    assert cycles(edges) and not private
    # fake.a -> fake.sub.b -> fake.sub.e -> fake.sub.f -> fake.a
    (cycle,) = cycles(edges)
    assert [e.importer for e in cycle] == ["fake.a", "fake.sub.b", "fake.sub.e", "fake.sub.f"]
    assert cycle[-1].imported == "fake.a"
    assert describe(cycle).startswith(
        "import cycle fake.a -> fake.sub.b -> fake.sub.e -> fake.sub.f -> fake.a:"
    )
    assert f"fake.sub.f -> fake.a ({Path('fake/sub/f.py')}:2)" in describe(cycle)


def test_checker_finds_a_cycle_of_two_and_names_its_lines(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import json\n\nfrom .b import thing\n",
            "b.py": "def later():\n    from . import a\n    return a\nthing = 1\n",
            "c.py": "from . import a, b\n",  # depends on the cycle, not part of it
        },
    )
    edges, _ = scan(package)
    (cycle,) = cycles(edges)
    assert [str(e) for e in cycle] == [
        f"fake.a -> fake.b ({Path('fake/a.py')}:3)",
        f"fake.b -> fake.a ({Path('fake/b.py')}:2)",
    ]


def test_checker_sees_no_cycle_through_a_package_whose_submodule_is_imported(tmp_path):
    # fake.pkg's __init__ imports fake.x, and fake.x imports fake.pkg.leaf: Python runs
    # fake/pkg/__init__.py on the way to leaf, but that is not counted as an edge.
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "def pick():\n    from ..x import run\n",
            "pkg/leaf.py": "",
            "x.py": "from .pkg.leaf import *\nfrom .pkg import leaf\n",
        },
    )
    edges, _ = scan(package)
    assert {(e.importer, e.imported) for e in edges} == {
        ("fake.pkg", "fake.x"),
        ("fake.x", "fake.pkg.leaf"),
    }
    assert cycles(edges) == []


def test_checker_finds_cycles_through_a_package_init(tmp_path):
    # A name of the package's __init__ (not a submodule) is an edge to the package.
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "def pick():\n    from ..x import run\n",
            "x.py": "from .pkg import pick\n\ndef run(): ...\n",
            "y.py": "from .z import q\n",
            "z.py": "import fake.y\nq = 1\n",
        },
    )
    edges, _ = scan(package)
    found = [[e.importer for e in c] for c in cycles(edges)]
    assert found == [["fake.pkg", "fake.x"], ["fake.y", "fake.z"]]


def test_checker_finds_private_names_taken_from_another_module(tmp_path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "run.py": "_check = 1\n__version__ = '1'\n\ndef _own(): ...\n",
            "sub/__init__.py": "",
            "sub/a.py": (
                "import os\n"
                "from os import _exit\n"  # another library's: not ours to judge
                "from ..run import _check, __version__\n"  # line 3: _check
                "from .. import run\n"
                "import fake.run\n"
                "import fake.run as r\n"
                "\n"
                "def f(self):\n"
                "    from fake.run import _own\n"  # line 9
                "    run._own()\n"  # line 10
                "    fake.run._check\n"  # line 11
                "    r._check = 2\n"  # line 12
                "    self._fine, os._exit, run.__name__\n"
            ),
            "b.py": "_mine = 1\n\ndef g():\n    return _mine\n",
        },
    )
    _, private = scan(package)
    a = Path("fake/sub/a.py")
    assert [str(p) for p in sorted(private, key=lambda p: p.line)] == [
        f"{a}:3: from fake.run import _check",
        f"{a}:9: from fake.run import _own",
        f"{a}:10: fake.run._own",
        f"{a}:11: fake.run._check",
        f"{a}:12: fake.run._check",
    ]


@pytest.mark.parametrize("source", ["from . import _check\n", "from fake import _check\n"])
def test_checker_finds_private_names_of_the_package_init(tmp_path, source):
    package = write_package(tmp_path, {"__init__.py": "_check = 1\n", "a.py": source})
    _, private = scan(package)
    assert [str(p) for p in private] == [f"{Path('fake/a.py')}:1: from fake import _check"]
