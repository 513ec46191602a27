"""The benchmark's synthetic KV fill (foveate.instruments.synthetic_kv): N image cells loaded as a state
must be the cells a real prefill of N image embeddings leaves (positions, image flag), so the
decode graph that runs on them is the real one."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.native import bindings as B
from foveate.instruments.synthetic_kv import prefill_synthetic
from foveate.engine.core import Engine
from foveate.instruments.synthetic_kv import fill_image_cells, get_seq_state, parse_seq_state

llama = B.llama
N, SAMPLE = 160, 16


@pytest.fixture(scope="module")
def model_1d(tmp_path_factory):
    from foveate.instruments.shapes.tiny_model import TinyShape, write_text_model

    return write_text_model(tmp_path_factory.mktemp("rope1d") / "tiny-1d-f16.gguf",
                            TinyShape(rope_1d=True))


def _state(eng):
    return parse_seq_state(get_seq_state(eng._ctx), llama.llama_model_n_layer(eng._model))


@pytest.mark.parametrize("kind,flash_attn", [("mrope", True), ("mrope", False), ("1d", True)])
def test_state_fill_gives_the_cells_of_a_real_prefill(models, model_1d, kind, flash_attn):
    path = models["f16"] if kind == "mrope" else model_1d
    real = Engine(path, None, n_ctx=512, threads=2, flash_attn=flash_attn)
    llama.llama_memory_clear(llama.llama_get_memory(real._ctx), True)
    n_past_real = prefill_synthetic(real, N)
    want = _state(real)

    eng = Engine(path, None, n_ctx=512, threads=2, flash_attn=flash_attn, fixation=0.125,
                 fixation_k_min=4)
    n_past = fill_image_cells(eng, N, sample=SAMPLE)
    got = _state(eng)
    assert n_past == n_past_real
    assert got.v_trans == want.v_trans == (not flash_attn)
    np.testing.assert_array_equal(got.cells, want.cells)        # positions, image flag, seq
    for (tg, rg, kg), (tw, rw, kw) in zip(got.k + got.v, want.k + want.v):
        assert (tg, rg) == (tw, rw) and kg.shape == kw.shape
    # the K/V rows repeat the sample's (the first SAMPLE rows were really computed)
    k0 = got.k[0][2]
    np.testing.assert_array_equal(k0[SAMPLE:2 * SAMPLE], k0[:SAMPLE])
    if kind == "1d":   # same embeddings and positions, causal: the real prefill's first rows
        for (_, _, kg), (_, _, kw) in zip(got.k, want.k):
            np.testing.assert_allclose(kg[:SAMPLE].view(np.float16).astype(np.float32),
                                       kw[:SAMPLE].view(np.float16).astype(np.float32),
                                       rtol=1e-2, atol=1e-3)

    # decoding on the filled cache: fixation sees N image cells and picks among them
    eng._decode_one(1, n_past)
    sel = eng.fixation_selection()
    assert len(sel) == N // 8 and all(0 <= i < N for i in sel)
    real.close(), eng.close()


def test_state_fill_that_does_not_fit_raises(models):
    from foveate.errors import DecodeError

    eng = Engine(models["f16"], None, n_ctx=256, threads=2)
    with pytest.raises(DecodeError, match=f"n_ctx={eng.n_ctx}"):
        fill_image_cells(eng, eng.n_ctx + 1, sample=16)
    eng.close()
