"""The vision encoder's cuts (docs/benchmarks.md, "The vision encoder"): ggml's matmul with a k
that is not a multiple of the SIMD width (patch 0013) against a float64 reference, and the
projector's F16 matmul weights as BF16 (patch 0012, native/mtmd/clip-weights.cpp)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from conftest import REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest, ties to even), as ggml_fp32_to_bf16."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return bits.astype(np.uint32).view(np.float32)


ROUND = {"f32": lambda a: a.astype(np.float32), "bf16": _bf16,
         "f16": lambda a: a.astype(np.float16).astype(np.float32)}


@pytest.mark.parametrize("k", [1280, 3420, 4304, 77])
@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16"])
def test_mul_mat_with_any_k_matches_float64(wtype, k):
    """k = 3420 (Qwen2.5-VL's vision MLP) and 4304 (SigLIP's) are not multiples of tinyBLAS's
    16 or 32: since patch 0013 their last k % KN products are added one at a time."""
    from foveate.native import bindings as B

    m, n = 64, 48
    rng = np.random.default_rng(k)
    w = rng.standard_normal((m, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    out = np.zeros((n, m), np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    assert B.foveate.foveate_mul_mat(B.ggml_type(wtype), k, m, n, 2, w.ctypes.data_as(fp),
                                     x.ctypes.data_as(fp), out.ctypes.data_as(fp)) == 0
    # ggml multiplies the weight's type by the activations rounded to the same type
    wr, xr = ROUND[wtype](w).astype(np.float64), ROUND[wtype](x).astype(np.float64)
    ref = xr @ wr.T
    scale = np.abs(xr) @ np.abs(wr).T
    assert np.max(np.abs(out - ref) / scale) < 1e-5, (wtype, k)


def test_bf16_weights_change_the_encode_a_little_and_off_is_stock():
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page
    from foveate.native import bindings as B

    page = load_page(READER / "sample-page.png")
    off = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2, vision_bf16=False)
    try:
        stock = off.image_embeddings(page)
        assert not off.vision_weights_bf16
        assert np.array_equal(stock, off.image_embeddings(page))
        supported = B.merge.mtmd_foveate_weights_bf16_supported(off._mtmd) == 1
    finally:
        off.close()
    on = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2)
    try:
        got = on.image_embeddings(page)
        assert on.vision_weights_bf16 == supported
    finally:
        on.close()
    if not supported:
        assert np.array_equal(got, stock)   # nothing changes on a CPU without AVX512_BF16
        pytest.skip("this CPU has no AVX512_BF16: the BF16 weights stay off")
    assert not np.array_equal(got, stock)   # the BF16 path ran
    rms = np.sqrt((stock ** 2).mean(axis=1, keepdims=True))
    rel = np.abs(got - stock) / rms
    cos = (got * stock).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(stock, axis=1)
    assert rel.mean() < 2e-2 and cos.min() > 0.999, (rel.mean(), cos.min())
    with pytest.raises(ValueError, match="vision_bf16"):
        Engine(str(MODEL), str(MMPROJ), vision_bf16="yes")
