"""No module of the package needs, while it loads, a module that needs it back while that one
loads: the graph of module-level imports inside `wlnet` has no cycle.

An edge A → B means that running A's top-level code runs B's first (or needs B's top-level code
to have defined a name). Imports inside functions are not edges (they run after loading), nor
are imports under `if TYPE_CHECKING:`. Importing a.b.c runs the packages a and a.b first, so
they are edges too, except a package that contains A: it has always been started before A is.
`from p import x` is an edge to the submodule p.x when there is one (Python imports it then),
else to p itself, whose top-level code has to have defined x.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(root: Path, package: str) -> dict:
    """{module name: file} of every module under root/package; a package is named by its __init__."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(body: list):
    """The Import and ImportFrom statements that run when the module loads: into if/try/with and
    class bodies, not into functions, not under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _top_level_imports(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _top_level_imports(node.body)


def _ancestors(name: str) -> list:
    """"a.b.c" → ["a", "a.b"]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str) -> dict:
    """{module: {imported module: line}} over the package's modules, module-level imports only."""
    mods = modules(root, package)
    graph = {}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]  # the package relative imports start from
        targets = {}  # module → the line of its first import
        for node in _top_level_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                needed = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here.split(".")
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                    pkg = ".".join(base + ([node.module] if node.module else []))
                else:
                    pkg = node.module
                subs = [f"{pkg}.{alias.name}" for alias in node.names]
                # a name that is a submodule is imported as one; any other name is read from pkg
                needed = [s for s in subs if s in mods] + ([pkg] if any(s not in mods for s in subs) else [])
            for target in needed:  # the packages run on the way to it, then the target itself
                for t in [a for a in _ancestors(target) if a not in _ancestors(name)] + [target]:
                    if t in mods and t != name:
                        targets.setdefault(t, node.lineno)
        graph[name] = targets
    return graph


def cycles(graph: dict) -> list:
    """Every strongly connected group of more than one module, as one cycle through it: a list
    of modules, the first repeated at the end."""
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:  # a shortest way back to the group's first module, inside the group
        start = min(group)
        paths, seen, queue = {start: [start]}, {start}, [start]
        while queue:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    out.append(paths[v] + [start])
                    queue = []
                    break
                if w in group and w not in seen:
                    seen.add(w)
                    paths[w] = paths[v] + [w]
                    queue.append(w)
    return out


def _explain(graph: dict, mods: dict, root: Path, cycle: list) -> str:
    return "\n".join(f"  {a} ({mods[a].relative_to(root)}, line {graph[a][b]}) imports {b}"
                     for a, b in zip(cycle, cycle[1:]))


def test_the_package_has_no_module_level_import_cycle():
    graph = import_graph(SRC, "wlnet")
    mods = modules(SRC, "wlnet")
    assert len(graph) > 40 and graph["wlnet"]  # the walk found the modules and the package's own imports
    assert "wlnet.coders.decoders" in graph["wlnet.layers.base"]
    # encoders and decoders share coders/labels.py; neither loads the other
    assert "wlnet.coders.labels" in graph["wlnet.coders.encoders"]
    assert "wlnet.coders.labels" in graph["wlnet.coders.decoders"]
    assert "wlnet.coders.decoders" not in graph["wlnet.coders.encoders"]
    assert "wlnet.coders.encoders" not in graph["wlnet.coders.decoders"]
    found = cycles(graph)
    assert not found, "module-level import cycles:\n" + "\n\n".join(_explain(graph, mods, SRC, c) for c in found)


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _imports_cleanly(root: Path, package: str) -> bool:
    run = subprocess.run([sys.executable, "-c", f"import {package}"], cwd=root, capture_output=True, text=True)
    return run.returncode == 0


def test_a_cycle_is_found_and_what_is_not_one_is_not(tmp_path):
    # acyclic, though every kind of import that is not an edge is there: a package importing its
    # children, children reaching siblings through the package, the cycles only inside functions
    # or under TYPE_CHECKING
    _write(tmp_path, {
        "fine/__init__.py": "from . import a, b\nfrom .a import f\n",
        "fine/a.py": """
            from typing import TYPE_CHECKING

            from . import b

            if TYPE_CHECKING:
                from .c import C

            def f():
                from .c import g
                return g()
            """,
        "fine/b.py": "X = 1\n",
        "fine/c.py": "from .a import f\n\nclass C:\n    pass\n\ndef g():\n    return 2\n",
    })
    # a cycle of two siblings through their names
    _write(tmp_path, {
        "loop/__init__.py": "from .a import f\n",
        "loop/a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "loop/b.py": "from .a import f\n\ndef g():\n    return 1\n",
    })
    # a child that reads a name its package's __init__ has not yet defined
    _write(tmp_path, {
        "back/__init__.py": "from .c import h\nX = 1\n",
        "back/c.py": "from . import X\n\ndef h():\n    return X\n",
    })
    # a cycle three long, through a class body and a try block, and a package run for its child
    _write(tmp_path, {
        "ring/__init__.py": "",
        "ring/a.py": "class A:\n    from .sub.b import B\n",
        "ring/sub/__init__.py": "from ..c import C\n",
        "ring/sub/b.py": "B = 1\n",
        "ring/c.py": "try:\n    from .a import A\nexcept KeyError:\n    pass\nC = 1\n",
    })
    assert cycles(import_graph(tmp_path, "fine")) == []
    assert _imports_cleanly(tmp_path, "fine")
    assert cycles(import_graph(tmp_path, "loop")) == [["loop.a", "loop.b", "loop.a"]]
    assert cycles(import_graph(tmp_path, "back")) == [["back", "back.c", "back"]]
    assert cycles(import_graph(tmp_path, "ring")) == [["ring.a", "ring.sub", "ring.c", "ring.a"]]
    for package in ("loop", "back", "ring"):  # Python agrees: each fails to load
        assert not _imports_cleanly(tmp_path, f"{package}.a" if package == "ring" else package), package
