"""python/foveate is layered: each subpackage imports only itself and the layers below it,
and no module imports, directly or through others, a module that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PKG = REPO / "python" / "foveate"
# rank of each top-level part; same rank (native, inputs) may not import each other
RANK = {"errors": 0, "native": 1, "inputs": 1, "engine": 2, "instruments": 3, "surface": 4,
        "__init__": 5, "__main__": 5, "ray": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, f: Path, mods: dict) -> set[str]:
    """Every foveate module `name` imports, at top level or inside functions."""
    is_pkg = f.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    if name == "__init__":
        here = []
    found = set()
    for node in ast.walk(ast.parse(f.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else list(here)
                mod = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "foveate":
                mod = node.module.split(".")[1:]
            else:
                continue
            targets.append(".".join(mod))
            targets += [".".join(mod + [a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            targets += [a.name.split(".", 1)[1] for a in node.names
                        if a.name.startswith("foveate.")]
        found |= {t for t in targets if t in mods and t != name}
    return found


def _graph():
    mods = _modules()
    return {n: _imports(n, f, mods) for n, f in mods.items()}


def test_every_module_sits_in_a_layer():
    assert {n.split(".")[0] for n in _graph()} <= set(RANK)


def test_imports_go_only_downward():
    bad = []
    for n, deps in _graph().items():
        top = n.split(".")[0]
        for d in deps:
            dtop = d.split(".")[0]
            if dtop != top and RANK[dtop] >= RANK[top]:
                bad.append(f"{n} -> {d}")
    assert not bad, bad


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state, cycles = {}, []

    def visit(n, path):
        state[n] = 1
        for d in sorted(g[n]):
            if state.get(d) == 1:
                cycles.append(path[path.index(d):] + [d])
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n, [n])
    return cycles


def test_no_import_circles():
    assert not _cycles(_graph())


def test_the_checker_can_fail():
    """The graph holds the real edges (relative, function-level, `from . import x`), and a
    circle is found when there is one."""
    g = _graph()
    assert "native.bindings" in g["engine.core"]
    assert "engine.controls" in g["engine.core"]           # from . import controls as C
    assert "engine.focal_store" in g["engine.controls"]    # inside a function
    assert "instruments.bench" in g["surface.cli"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
