#!/usr/bin/env python3
"""Prepare the patched llama.cpp source tree for the foveate build.

Source of truth: vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist on PyPI.
The sdist is downloaded once with pip, checked against a pinned sha256, cached
outside the source tree and extracted there.  The working tree in the build
directory is the pristine source plus patches/*.patch applied in order.

Unchanged files keep their timestamps when the patches change, so an
incremental build only recompiles what a patch touched.

The download runs inside pip's isolated build environment, with `python -m pip download`:
pyproject.toml lists pip as a build requirement so that it is importable there (an isolated
build environment hides the venv's own pip). pip, not urllib, because it honours the user's
index, proxy, certificate and find-links settings, the same ones that fetched the build
backend a moment before.

Offline builds: set FOVEATE_SDIST to a local copy of the tarball (its hash is
checked), or FOVEATE_SDIST_DIR to an already extracted sdist directory.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST_NAME = "llama_cpp_python-0.3.36"
SDIST_FILE = SDIST_NAME + ".tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PIP_SPEC = "llama-cpp-python==0.3.36"
# Top-level llama.cpp folders the build never reads (vocab GGUFs, docs): not copied.
SKIP_TOP = {"models", "docs", "media", ".github", "benches", ".git"}


class SourceError(Exception):
    """The llama.cpp source cannot be prepared; the message says why and what to do."""


def fail(msg: str):
    raise SourceError(msg)


def default_cache_dir() -> Path:
    if os.environ.get("FOVEATE_CACHE_DIR"):
        return Path(os.environ["FOVEATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "foveate"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(cache: Path) -> Path:
    """Return a hash-checked tarball, downloading it with pip if needed."""
    local = os.environ.get("FOVEATE_SDIST")
    tarball = Path(local) if local else cache / SDIST_FILE
    if not tarball.exists():
        if local:
            fail(f"FOVEATE_SDIST={local} does not exist (it should be the file {SDIST_FILE})")
        cache.mkdir(parents=True, exist_ok=True)
        print(f"foveate: downloading {PIP_SPEC} sdist into {cache}", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", PIP_SPEC, "-d", str(cache)]
        try:
            r = subprocess.run(cmd)
            ok = r.returncode == 0
        except OSError:
            ok = False
        if not ok or not tarball.exists():
            fail(f"could not download {PIP_SPEC} with pip (see pip's message above); for an "
                 f"offline build set FOVEATE_SDIST (the tarball {SDIST_FILE}) or "
                 f"FOVEATE_SDIST_DIR (an extracted sdist)")
    digest = sha256_of(tarball)
    if digest != SDIST_SHA256:
        if not local:
            tarball.unlink()  # a bad download must not poison the cache: the next run refetches
        fail(f"{tarball}: sha256 {digest} does not match the pinned {SDIST_SHA256}; "
             f"refusing to build" + ("" if local else " (removed from the cache)"))
    return tarball


def extracted_sdist(cache: Path) -> Path:
    if os.environ.get("FOVEATE_SDIST_DIR"):
        root = Path(os.environ["FOVEATE_SDIST_DIR"])
        if not (root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
            fail(f"FOVEATE_SDIST_DIR={root} holds no vendor/llama.cpp/CMakeLists.txt (it "
                 f"should be the extracted {SDIST_NAME} folder)")
        return root
    tarball = fetch_sdist(cache)
    root = cache / SDIST_NAME
    marker = root / ".foveate-extracted"
    if marker.exists() and marker.read_text() == SDIST_SHA256:
        return root
    if root.exists():
        shutil.rmtree(root)
    with tarfile.open(tarball) as tf:
        tf.extractall(cache, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(cache)
    marker.write_text(SDIST_SHA256)
    return root


def copy_pristine(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    ignore_top = lambda d, names: [n for n in names if Path(d) == src and n in SKIP_TOP]
    shutil.copytree(src, dst, ignore=ignore_top, symlinks=True)


def apply_patches(tree: Path, patches: list[Path]) -> None:
    # The build tree may sit inside foveate's own git checkout: stop git from finding
    # it, so `git apply` patches this folder as a plain directory.
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tree.parent))
    if not shutil.which("git"):
        fail("git is needed to apply foveate's patches to llama.cpp: install git and retry")
    for p in patches:
        check = subprocess.run(["git", "apply", "--check", str(p)], cwd=tree, env=env,
                               capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"patch {p.name} does not apply:\n{check.stderr}")
        subprocess.run(["git", "apply", "--whitespace=nowarn", str(p)], cwd=tree, env=env, check=True)
        print(f"foveate: applied {p.name}", flush=True)


def sync_tree(staging: Path, out: Path) -> int:
    """Make `out` equal to `staging`, touching only files whose content differs."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(staging):
        rel = Path(dirpath).relative_to(staging)
        (out / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = Path(dirpath) / name, out / rel / name
            if not d.exists() or not filecmp.cmp(s, d, shallow=False):
                shutil.copy2(s, d)
                os.utime(d)  # newer than any object built from the old content
                changed += 1
    for dirpath, dirnames, filenames in os.walk(out, topdown=False):
        rel = Path(dirpath).relative_to(out)
        for name in filenames:
            if rel == Path(".") and name == ".foveate-stamp":
                continue
            if not (staging / rel / name).exists():
                (Path(dirpath) / name).unlink()
                changed += 1
    return changed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path, help="patched llama.cpp tree to create")
    ap.add_argument("--python-layer-out", type=Path,
                    help="where to write the path of llama-cpp-python's llama_cpp/ package")
    args = ap.parse_args()
    try:
        prepare(args)
    except SourceError as e:
        print(f"foveate: {e}", file=sys.stderr)
        sys.exit(1)


def prepare(args) -> None:
    root = extracted_sdist(default_cache_dir())
    pristine = root / "vendor" / "llama.cpp"
    patches = sorted(args.patches.glob("*.patch"))

    stamp_h = hashlib.sha256(SDIST_SHA256.encode())
    for p in patches:
        stamp_h.update(p.name.encode() + b"\0" + p.read_bytes())
    stamp = stamp_h.hexdigest()
    stamp_file = args.out / ".foveate-stamp"
    if not (stamp_file.exists() and stamp_file.read_text() == stamp):
        staging = args.out.with_name(args.out.name + ".staging")
        copy_pristine(pristine, staging)
        apply_patches(staging, patches)
        args.out.mkdir(parents=True, exist_ok=True)
        n = sync_tree(staging, args.out)
        shutil.rmtree(staging)
        stamp_file.write_text(stamp)
        print(f"foveate: patched llama.cpp ready in {args.out} ({len(patches)} patches, {n} files updated)")
    if args.python_layer_out:
        args.python_layer_out.write_text(str(root / "llama_cpp"))


if __name__ == "__main__":
    main()
