"""The install's first step, cmake/llama_source.py: download, verify and cache the
llama-cpp-python 0.3.36 sdist, or refuse clearly. The error cases need no network."""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture()
def src(monkeypatch):
    """cmake/llama_source.py as a module, with none of its variables set by the caller."""
    spec = importlib.util.spec_from_file_location("llama_source", REPO / "cmake" / "llama_source.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.real_tarball = _real_tarball(mod)   # before the variables that locate it are cleared
    for var in ("FOVEATE_SDIST", "FOVEATE_SDIST_DIR", "FOVEATE_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return mod


def _fake_tarball(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        data = b"not llama.cpp\n"
        info = tarfile.TarInfo("llama_cpp_python-0.3.36/README.md")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def _real_tarball(src) -> Path | None:
    """The tarball this install verified, if this machine holds one (the build's cache)."""
    for p in (os.environ.get("FOVEATE_SDIST"), src.default_cache_dir() / src.SDIST_FILE):
        if p and Path(p).is_file() and src.sha256_of(Path(p)) == src.SDIST_SHA256:
            return Path(p)
    return None


def _offline(monkeypatch, links: Path) -> None:
    """pip may look only in `links`: no index, no network."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)   # no machine-wide index either


def test_empty_cache_downloads_and_verifies(src, tmp_path, monkeypatch):
    """An empty cache: pip fetches the sdist (here from a local find-links folder holding the
    real tarball, so the test runs offline), the hash is checked, the tree is extracted."""
    real = src.real_tarball
    if real is None:
        pytest.skip("no verified llama-cpp-python 0.3.36 tarball on this machine (built from "
                    "FOVEATE_SDIST_DIR?)")
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy(real, links / src.SDIST_FILE)
    _offline(monkeypatch, links)
    cache = tmp_path / "cache"
    root = src.extracted_sdist(cache)
    assert (cache / src.SDIST_FILE).is_file()
    assert src.sha256_of(cache / src.SDIST_FILE) == src.SDIST_SHA256
    assert root == cache / src.SDIST_NAME
    assert (root / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file()
    assert (root / "llama_cpp" / "llama.py").is_file()
    # a second call reuses the cache: no pip, even with nothing to download from
    shutil.rmtree(links)
    assert src.extracted_sdist(cache) == root


def test_download_failure_names_the_offline_variables(src, tmp_path, monkeypatch):
    empty = tmp_path / "links"
    empty.mkdir()
    _offline(monkeypatch, empty)
    with pytest.raises(src.SourceError) as e:
        src.fetch_sdist(tmp_path / "cache")
    msg = str(e.value)
    assert "could not download llama-cpp-python==0.3.36" in msg
    assert "FOVEATE_SDIST" in msg and "FOVEATE_SDIST_DIR" in msg


def test_wrong_hash_in_cache_is_refused_and_removed(src, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    bad = _fake_tarball(cache / src.SDIST_FILE)
    digest = src.sha256_of(bad)
    with pytest.raises(src.SourceError) as e:
        src.fetch_sdist(cache)
    assert digest in str(e.value) and src.SDIST_SHA256 in str(e.value)
    assert not bad.exists(), "a tarball with the wrong hash must not stay in the cache"


def test_wrong_hash_from_foveate_sdist_is_refused_and_kept(src, tmp_path, monkeypatch):
    bad = _fake_tarball(tmp_path / src.SDIST_FILE)
    monkeypatch.setenv("FOVEATE_SDIST", str(bad))
    with pytest.raises(src.SourceError) as e:
        src.extracted_sdist(tmp_path / "cache")
    assert src.sha256_of(bad) in str(e.value) and src.SDIST_SHA256 in str(e.value)
    assert bad.exists(), "the user's own file is never deleted"


def test_foveate_sdist_missing_file(src, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / src.SDIST_FILE
    monkeypatch.setenv("FOVEATE_SDIST", str(missing))
    with pytest.raises(src.SourceError, match="does not exist") as e:
        src.extracted_sdist(tmp_path / "cache")
    assert str(missing) in str(e.value)


def test_foveate_sdist_dir_without_llama_cpp(src, tmp_path, monkeypatch):
    (tmp_path / "sdist" / "vendor").mkdir(parents=True)
    monkeypatch.setenv("FOVEATE_SDIST_DIR", str(tmp_path / "sdist"))
    with pytest.raises(src.SourceError, match="holds no vendor/llama.cpp") as e:
        src.extracted_sdist(tmp_path / "cache")
    assert str(tmp_path / "sdist") in str(e.value)


def test_pip_is_a_build_requirement():
    """The download runs `python -m pip` inside pip's isolated build environment, which
    holds only the build requirements: without pip listed there, a fresh install fails."""
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+

    reqs = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    assert any(r.split(">")[0].split("=")[0].strip() == "pip" for r in reqs)


def test_ci_runs_the_readme_test_command_on_an_empty_cache():
    """.ci/run is exactly the README's test command, after pointing the source cache at a new
    empty folder: every CI run downloads the sdist as a fresh machine does."""
    from readme_blocks import readme_test_command

    ci = (REPO / ".ci" / "run").read_text()
    cmd = readme_test_command()
    lines = [ln.strip() for ln in ci.splitlines()]
    assert cmd in lines
    before = "\n".join(lines[:lines.index(cmd)])
    assert "export FOVEATE_CACHE_DIR=" in before and "mktemp -d" in before
