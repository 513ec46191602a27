"""`foveate bench --encode-profile` (instruments/encode_profile.py): the vision encoder's graph
timed node by node through libfoveate's eval callback, grouped with FLOPs; and the CPU's
matmul rate per type (foveate_mul_mat_gflops)."""
from __future__ import annotations

import pytest

from conftest import REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"


def _record(**kw):
    from foveate.native.bindings import NodeTime

    r = NodeTime()
    for k, v in kw.items():
        if isinstance(v, (list, tuple)):
            getattr(r, k)[:] = list(v) + [1] * (4 - len(v))
        else:
            setattr(r, k, v)
    return r


def test_groups_and_flops_of_single_nodes():
    from foveate.instruments.encode_profile import classify

    key, flops, nbytes = classify(_record(op=b"MUL_MAT", type0=b"f16", ne0=[1280, 3420],
                                          ne1=[1280, 1344], src0_leaf=1))
    assert key == "mul_mat weight f16 [1280 x 3420]" and flops == 2.0 * 1280 * 3420 * 1344
    assert nbytes == 1280 * 3420 * 2
    key, flops, _ = classify(_record(op=b"MUL_MAT", type0=b"f32", type1=b"f32",
                                     ne0=[64, 256, 16], ne1=[64, 256, 16], src0_leaf=0))
    assert key.startswith("mul_mat of activations") and flops == 2.0 * 64 * 256 * 256 * 16
    key, flops, _ = classify(_record(op=b"FLASH_ATTN_EXT", ne0=[80, 1344, 16], ne1=[80, 1344, 16],
                                     ne2=[80, 1344, 16]))
    assert key == "flash attention (n_kv 1344)" and flops == 2.0 * 1344 * 1344 * 16 * 160


def test_the_bundled_projector_is_profiled_node_by_node():
    """Every q/k/v/o projection of the bundled projector's 2 layers is seen with its shape:
    8 matmuls of a 96 x 96 weight over all of the page's patches."""
    from foveate.engine.core import Engine
    from foveate.instruments.encode_profile import encode_profile

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2, vision_bf16=False)
    try:
        groups, plain_ms, profiled_ms = encode_profile(eng, READER / "sample-page.png",
                                                       warmup=False)
        by = {g.key: g for g in groups}
        attn = [g for g in groups if g.key.startswith("flash attention")]
        assert len(attn) == 1 and attn[0].nodes == 2
        n_patches = int(attn[0].key.split("n_kv ")[1].rstrip(")"))
        qkvo = by["mul_mat weight f16 [96 x 96]"]
        assert qkvo.nodes == 8 and qkvo.flops == 2.0 * 96 * 96 * n_patches * 8
        assert plain_ms > 0 and profiled_ms > 0
        # the projector is whole again afterwards: a page reads as before the profile
        assert eng.read(READER / "sample-page.png", max_tokens=40).text
    finally:
        eng.close()


def test_the_matmul_rate_is_measured_and_bad_shapes_refused():
    from foveate.native import bindings as B

    assert B.foveate.foveate_mul_mat_gflops(B.ggml_type("f16"), 256, 256, 32, 1, 1) > 0
    assert B.foveate.foveate_mul_mat_gflops(B.ggml_type("q8_0"), 100, 64, 8, 1, 1) < 0  # k % 32
    assert B.foveate.foveate_mul_mat_gflops(9999, 256, 256, 8, 1, 1) < 0
    with pytest.raises(Exception):
        B.ggml_type("no-such-type")
