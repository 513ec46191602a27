"""python/foveate is layered: each part imports only itself and the parts below it, and no
module imports, directly or through others, a module that imports it back. The surface's
front doors are parts of their own: the CLI may import the server, Ray and the API; the
server and Ray import neither each other nor the CLI; the API imports no other door."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PKG = REPO / "python" / "foveate"
# rank of each part (a module belongs to the longest name that prefixes it); parts of the same
# rank (native and inputs; the server and Ray) may not import each other. Instruments rank
# above the doors they measure (the soak drives a Reader, bench_server the server) and below
# the CLI, whose bench / eval / pages / make-model / calibrate commands run them.
RANK = {"errors": 0, "native": 1, "inputs": 1, "engine": 2,
        "surface.api": 3, "surface.pipeline": 4,
        "surface.server": 5, "surface.ray": 5,
        "instruments": 6, "surface.cli": 7, "surface": 7,
        # public names: the package, `python -m foveate`, foveate.ray, the README's import
        # path of the trace pictures (surface/pipeline/trace_picture.py)
        "__init__": 8, "__main__": 8, "ray": 8, "surface.trace_picture": 8}
DOORS = ("surface.api", "surface.server", "surface.ray", "surface.cli")


def part(module: str) -> str:
    """The part of RANK a module belongs to: the longest name that prefixes it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANK:
            return ".".join(parts[:n])
    raise KeyError(module)


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _from_imports(name: str, f: Path):
    """(node, the foveate module path it imports from, as a list) of each `from ... import`
    in module `name` that names a foveate module (relative, or `from foveate...`)."""
    here = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
    if name == "__init__":
        here = []
    for node in ast.walk(ast.parse(f.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else list(here)
            yield node, base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "foveate":
            yield node, node.module.split(".")[1:]


def _imports(name: str, f: Path, mods: dict) -> set[str]:
    """Every foveate module `name` imports, at top level or inside functions."""
    found = set()
    for node, mod in _from_imports(name, f):
        # `from pkg import mod` imports the module; `from pkg import name` the package (a
        # package's __init__ runs for any import of its modules: that edge is not counted)
        targets = [".".join(mod + [a.name]) for a in node.names]
        if not all(t in mods for t in targets):
            targets.append(".".join(mod))
        found |= {t for t in targets if t in mods and t != name}
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            found |= {t for t in (a.name.split(".", 1)[1] for a in node.names
                                  if a.name.startswith("foveate."))
                      if t in mods and t != name}
    return found


def _graph():
    mods = _modules()
    return {n: _imports(n, f, mods) for n, f in mods.items()}


def _missing() -> list[str]:
    """foveate modules imported (at top level or inside functions) that do not exist: such
    an import fails only when its function runs (make-model's did, after a move)."""
    mods = _modules()
    bad = []
    for name, f in mods.items():
        for node, mod in _from_imports(name, f):
            target = ".".join(mod)
            if target not in mods and not all(".".join(mod + [a.name]) in mods for a in node.names):
                bad.append(f"{name}: from {'.' * node.level}{node.module or ''} ({target or '<package>'})")
    return bad


def test_every_imported_foveate_module_exists():
    assert not _missing(), _missing()


def test_every_module_sits_in_a_layer():
    assert {n.split(".")[0] for n in _graph()} <= set(RANK)
    for n in _graph():
        part(n)


def _upward(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for n, deps in g.items():
        top = part(n)
        for d in deps:
            dtop = part(d)
            if dtop != top and RANK[dtop] >= RANK[top]:
                bad.append(f"{n} -> {d}")
    return bad


def test_imports_go_only_downward():
    assert not _upward(_graph()), _upward(_graph())


def test_each_front_door_has_its_own_folder():
    """The doors are folders, and the surface's top holds nothing but the shared pipeline's
    public trace-picture path and the package doc."""
    surface = PKG / "surface"
    for door in DOORS + ("surface.pipeline",):
        assert (PKG / door.replace(".", "/") / "__init__.py").is_file(), door
    assert sorted(f.name for f in surface.glob("*.py")) == ["__init__.py", "trace_picture.py"]


def test_a_door_that_imports_another_door_fails():
    """The checker catches the door edges it forbids: the server importing the CLI, Ray
    importing the server, the API importing Ray; and lets the CLI import the API."""
    for edge in (("surface.server.app", "surface.cli.read"),
                 ("surface.ray.driver", "surface.server.app"),
                 ("surface.api.reader", "surface.ray.workers"),
                 ("surface.pipeline.run", "surface.cli.main"),
                 ("surface.api.reader", "instruments.bench")):
        assert _upward({edge[0]: {edge[1]}}) == [f"{edge[0]} -> {edge[1]}"], edge
    assert _upward({"surface.cli.read": {"surface.api.reader", "surface.ray.driver",
                                         "surface.server.app", "instruments.bench"}}) == []


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
    assert "instruments.bench" in g["surface.cli.bench"]
    assert "surface.api" in g["surface.cli.read"]            # from ..api import Reader
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
