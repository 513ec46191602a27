"""foveate's ggml ops (fixation: fix_select, fix_attn) against float64 references on random
inputs, on CPU always and on CUDA when this build has it and a GPU is present. The cases
live in native/tests/test-fixation-ops.cpp (shapes, GQA, streams, K types, masks, -1 pads,
transposed V, and fix_attn over all cells vs the stock flash attention)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import foveate

ROOT = Path(__file__).resolve().parents[1]


def _test_binary() -> Path:
    for cand in (os.environ.get("FOVEATE_TEST_OPS"),
                 Path(foveate.__file__).parent / "_bin" / "foveate-test-ops",
                 ROOT / "build" / "dev" / "bin" / "foveate-test-ops"):
        if cand and Path(cand).is_file():
            return Path(cand)
    pytest.fail("foveate-test-ops not found (it is built and installed with the package)")


def _run(backend: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(_test_binary()), "-b", backend], capture_output=True, text=True,
                          timeout=600)


def test_fixation_ops_cpu():
    r = _run("CPU")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 failed" in r.stdout


def test_fixation_ops_cuda():
    r = _run("CUDA0")
    if r.returncode == 77:
        pytest.skip("no CUDA backend in this build or no GPU")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def _nvcc_compile(cu: Path, out: Path) -> subprocess.CompletedProcess:
    """Compile one CUDA file for Hopper against this checkout's patched tree (no GPU needed)."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if not nvcc:
        pytest.skip("nvcc not installed")
    # the tree this checkout's build patched (an older build dir may hold an older series)
    tree = [g for g in sorted(ROOT.glob("build/*/llama.cpp/ggml"), key=lambda p: -p.stat().st_mtime)
            if "GGML_OP_FIX_SELECT" in (g / "include" / "ggml.h").read_text()]
    if not tree:
        pytest.skip("no patched llama.cpp tree under build/ (pip install . creates one)")
    g = tree[0]
    # toolkits without cuBLAS (nvcc only): a declarations-only stand-in for its header
    cuda_inc = Path(nvcc).resolve().parent.parent / "include"
    stub = [] if (cuda_inc / "cublas_v2.h").exists() else [f"-I{ROOT / 'tests' / 'cuda-compile-stub'}"]
    return subprocess.run([nvcc, "-std=c++17", "-arch=sm_90", "-O3", "-c", str(cu), *stub,
                           f"-I{g}/include", f"-I{g}/src", f"-I{g}/src/ggml-cuda",
                           f"-I{ROOT / 'native' / 'ops'}", "-o", str(out)],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("cu", sorted((ROOT / "native" / "ops").glob("*.cu")), ids=lambda p: p.name)
def test_cuda_sources_compile_for_sm90(cu, tmp_path):
    """Every .cu file of ours compiles for Hopper, even on machines without a GPU."""
    r = _nvcc_compile(cu, tmp_path / "out.o")
    assert r.returncode == 0, r.stderr[-4000:]


def test_patched_ggml_cuda_dispatch_compiles_for_sm90(tmp_path):
    """ggml-cuda.cu as patches 0002 and 0003 leave it (the ops' dispatch and supports_op,
    including native/ops/*.cuh) compiles; it is otherwise only built with -DGGML_CUDA=ON."""
    trees = sorted(ROOT.glob("build/*/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu"),
                   key=lambda p: -p.stat().st_mtime)
    if not trees:
        pytest.skip("no patched llama.cpp tree under build/ (pip install . creates one)")
    text = trees[0].read_text()
    assert '#include "ggml-cuda-fixation.cuh"' in text and "case GGML_OP_OT_SINKHORN:" in text
    r = _nvcc_compile(trees[0], tmp_path / "ggml-cuda.o")
    assert r.returncode == 0, r.stderr[-4000:]
