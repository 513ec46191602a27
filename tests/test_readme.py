"""Every command and Python snippet in README.md runs as written (tests/readme_blocks.py says
how the placeholders map to the bundled reader), so the README cannot rot."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import readme_blocks as R

BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               FOVEATE_CACHE_DIR=str(tmp_path / "cache"))
    # `bench --stock` builds llama-bench from the source this install used; calibrations and
    # that build land in the folder's own cache, never in the user's
    real = Path(os.environ.get("FOVEATE_CACHE_DIR") or Path.home() / ".cache" / "foveate")
    sdist = real / "llama_cpp_python-0.3.36"
    if "FOVEATE_SDIST_DIR" not in env and (sdist / "vendor" / "llama.cpp").is_dir():
        env["FOVEATE_SDIST_DIR"] = str(sdist)
    return env


def _check(r: subprocess.CompletedProcess, what: str) -> None:
    assert r.returncode == 0, f"{what}\nexit {r.returncode}\nstderr:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{what}\n{r.stderr[-3000:]}"


def test_readme_has_the_two_commands():
    marks = [b.mark for b in R.blocks()]
    assert marks.count("install-read") == 1 and marks.count("install-test") == 1


def _install_prefix(cmd: str) -> tuple[list[str], str]:
    """`python3 -m venv .venv && .venv/bin/pip install X && REST` -> (install steps, REST)."""
    parts = cmd.split(" && ")
    assert parts[0] == "python3 -m venv .venv", cmd
    assert parts[1].startswith(".venv/bin/pip install "), cmd
    return parts[:2], " && ".join(parts[2:])


@pytest.mark.parametrize("block", R.runnable(), ids=lambda b: b.id)
def test_readme_block_runs(block, tmp_path):
    if block.mark.startswith("skip:"):
        reason = block.mark[len("skip:"):].strip()
        assert reason, f"README line {block.line}: a skipped block says what it needs"
        pytest.skip(f"README line {block.line} needs {reason}")
    env = _env(tmp_path)
    if block.mark == "install-test":
        pytest.skip(".ci/run runs this command (test_llama_source checks it is the same)")
    if block.mark == "install-read":
        # this session's interpreter is the install; run what follows it, from the repo
        _, rest = _install_prefix(block.code.strip())
        rest = rest.replace(".venv/bin/", f"{BIN}/")
        r = subprocess.run(["bash", "-c", rest], cwd=R.REPO, env=env, capture_output=True,
                           text=True, timeout=600)
        _check(r, rest)
        from foveate.instruments.evaluate import cer
        truth = (R.BUNDLED / "sample-page.txt").read_text()
        assert cer(r.stdout.strip(), truth.strip()) < 0.05, r.stdout
        return
    folder = R.placeholders(tmp_path / "work")
    if block.lang == "python":
        r = subprocess.run([sys.executable, "-c", block.code], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=600)
        _check(r, block.code)
        assert r.stdout.strip(), "the snippet prints its result"
        # llama.cpp's log stays out of a script's output unless asked for, and nothing
        # complains at exit (a Llama left to the interpreter's exit once did)
        assert r.stderr.strip() == "", r.stderr[-3000:]
        return
    for cmd in R.commands(block):
        r = subprocess.run(["bash", "-c", cmd], cwd=folder, env=env, capture_output=True,
                           text=True, timeout=900)
        _check(r, cmd)
