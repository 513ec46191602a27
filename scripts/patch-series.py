#!/usr/bin/env python3
"""Edit foveate's patch series as git commits, then write it back to patches/.

    scripts/patch-series.py tree DIR     # DIR: llama.cpp from the cached sdist, one commit
                                         # per patch (run `pip install .` once first: it
                                         # fills the cache)
    ... edit in DIR: fix a patch with `git commit --fixup <its commit>` and
        `GIT_SEQUENCE_EDITOR=true git rebase -i --autosquash stock` ...
    scripts/patch-series.py export DIR   # patches/NNNN-*.patch from DIR's commits, each with
                                         # its header line kept

A patch's header line (what it hooks and why) is its commit message's first line. Only
ggml/, src/, include/, tools/ and common/ are copied: the patches touch nothing else.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "patches"
PARTS = ("ggml", "src", "include", "tools", "common")
GIT = ["git", "-c", "user.email=foveate@localhost", "-c", "user.name=foveate"]


def cache_tree() -> Path:
    cache = Path(os.environ.get("FOVEATE_CACHE_DIR") or Path.home() / ".cache" / "foveate")
    tree = cache / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    if not tree.is_dir():
        sys.exit(f"no llama.cpp source at {tree}: run `pip install .` once (it fills the cache)")
    return tree


def run(*args, cwd: Path) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def tree(out: Path) -> None:
    import shutil

    if out.exists():
        sys.exit(f"{out} exists")
    src = cache_tree()
    out.mkdir(parents=True)
    for part in PARTS:
        shutil.copytree(src / part, out / part, symlinks=True)
    run("init", "-q", cwd=out)
    run("add", "-A", cwd=out)
    run("commit", "-qm", "stock", cwd=out)
    run("tag", "stock", cwd=out)
    for p in sorted(PATCHES.glob("*.patch")):
        header = p.read_text().splitlines()[0]
        run("apply", "--whitespace=nowarn", str(p), cwd=out)
        run("add", "-A", cwd=out)
        run("commit", "-qm", f"{p.stem}\n\n{header}", cwd=out)
    print(out)


def export(src: Path) -> None:
    commits = run("rev-list", "--reverse", "stock..HEAD", cwd=src).split()
    old = sorted(PATCHES.glob("*.patch"))
    names = []
    for c in commits:
        subject, _, body = run("log", "-1", "--format=%B", c, cwd=src).partition("\n\n")
        name, header = subject.strip(), body.strip().splitlines()[0]
        diff = run("diff", "--no-color", f"{c}^", c, cwd=src)
        (PATCHES / f"{name}.patch").write_text(f"{header}\n\n{diff}")
        names.append(f"{name}.patch")
    for p in old:
        if p.name not in names:
            p.unlink()
    print("\n".join(names))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("tree", "export"):
        sys.exit(__doc__)
    {"tree": tree, "export": export}[sys.argv[1]](Path(sys.argv[2]).resolve())
