"""Fixation and merging with every layer offloaded to CUDA (n_gpu_layers=99), on the bundled
reading model: the CPU tests' ratio-1 bit-identity (tests/test_fixation.py,
tests/test_merging.py) with the GPU graph, and the sparse paths running on the GPU. Skipped
unless this build has the CUDA backend and a GPU is present (scripts/gpu-check.sh runs them)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from foveate.native import bindings as B

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader" / "foveate-reader-q8_0.gguf"
MMPROJ = ROOT / "models" / "reader" / "foveate-reader-mmproj-f16.gguf"
PAGE = ROOT / "tests" / "data" / "pages" / "heldout-00000.png"
IMAGE_TOKENS = 408  # as tests/test_fixation.py
NGL = 99

pytestmark = pytest.mark.skipif(
    "CUDA" not in B.backends() or not B.llama.llama_supports_gpu_offload(),
    reason="no CUDA backend in this build or no GPU")


def _engine(**kw):
    from foveate.engine.core import Engine

    return Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, n_gpu_layers=NGL, **kw)


def _logits(steps: int = 12, **kw):
    """Prefill the page, then teacher-force the greedy tokens (tests/test_fixation.py)."""
    from foveate.inputs.images import load_page

    eng = _engine(**kw)
    n_past, _ = eng.prefill_page(load_page(PAGE))
    out = []
    for _ in range(steps):
        out.append(eng.logits().copy())
        eng._decode_one(int(out[-1].argmax()), n_past)
        n_past += 1
    return np.stack(out), eng


@pytest.mark.parametrize("flash_attn,refresh", [(True, 1), (False, 1), (True, 3)])
def test_cuda_fixation_ratio_one_is_bit_identical_to_off(flash_attn, refresh):
    off, e0 = _logits(flash_attn=flash_attn)
    one, e1 = _logits(flash_attn=flash_attn, fixation=1.0, fixation_refresh=refresh)
    assert np.array_equal(off, one)
    e0.close(), e1.close()


def test_cuda_merge_keep_ratio_one_is_bit_identical_to_off():
    from foveate.inputs.images import load_page

    res = []
    for merge in (None, 1.0):
        eng = _engine(merge=merge)
        n_past, stats = eng.prefill_page(load_page(PAGE))
        res.append((n_past, stats, eng.logits().copy()))
        eng.close()
    (p0, s0, off), (p1, s1, one) = res
    assert p0 == p1 and np.array_equal(off, one)
    assert s1.image_tokens_merged == s1.image_tokens == s0.image_tokens


def test_cuda_sparse_fixation_selects_the_budget():
    """fix_select / fix_attn run on the GPU inside the graph: the budget, ascending cells."""
    off, e0 = _logits(flash_attn=True)
    sparse, eng = _logits(flash_attn=True, fixation=0.05, fixation_k_min=4)
    assert not np.array_equal(off, sparse)
    assert (off.argmax(1) == sparse.argmax(1)).mean() >= 0.5
    sel = eng.fixation_selection(0)
    assert len(sel) == math.ceil(0.05 * IMAGE_TOKENS)
    assert sel == sorted(set(sel)) and 0 <= sel[0] and sel[-1] < IMAGE_TOKENS
    e0.close(), eng.close()


def test_cuda_merge_keeps_the_ratio_and_mostly_the_cpu_rows():
    """ot_sinkhorn / scatter_add_rows with the projector on the GPU: the kept count is exact;
    the kept rows are nearly those of the CPU run (float differences move only the boundary)."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    kept = []
    for ngl in (NGL, 0):
        eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, n_gpu_layers=ngl, merge=0.84)
        _, stats = eng.prefill_page(load_page(PAGE))
        kept.append(set(eng.merge_kept()))
        n_img = stats.image_tokens
        eng.close()
    gpu, cpu = kept
    assert len(gpu) == len(cpu) == int(n_img * 0.84)
    assert len(gpu & cpu) >= 0.9 * len(cpu)
