"""Fixation against the memory it runs on: a hybrid model's attention cells, the cells a
page lands in (holes and wrap-around in a shared cache), every KV cache type, a context that
never turns fixation on, and the sparse ops themselves at ratio 1 (forced, so the kernels run
where stock attention would)."""
from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np
import pytest

from foveate.engine.core import Engine
from foveate.native import bindings as B

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader" / "foveate-reader-q8_0.gguf"
MMPROJ = ROOT / "models" / "reader" / "foveate-reader-mmproj-f16.gguf"
PAGE = ROOT / "tests" / "data" / "pages" / "heldout-00000.png"
llama = B.llama


def _teacher_forced(eng, n_past: int, steps: int, tokens=None):
    """Logits of `steps` decode steps from n_past, feeding `tokens` (else the greedy ones)."""
    out = []
    for i in range(steps):
        out.append(eng.logits().copy())
        tok = int(out[-1].argmax()) if tokens is None else tokens[i]
        eng._decode_one(tok, n_past + i)
    return np.stack(out)


def _page_run(steps=10, force=False, **kw):
    from foveate.inputs.images import load_page

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, **kw)
    if force:
        assert B.fixation.llama_fixation_set_force_sparse(eng._ctx, 1) == 0
    n_past, _ = eng.prefill_page(load_page(PAGE))
    return eng, n_past


def test_forced_sparse_ops_at_ratio_one_give_the_dense_logits():
    """Ratio 1 runs the stock graph (every budget covers the page), so the identity test of
    ratio 1 proves the switch, not the kernels. Forced, the sparse graph runs with every image
    cell selected: the focal layer's fused attention + top-k, the other layers' list attention
    and the compensation sample (which then stands for no hidden cell). Its logits must be the
    dense ones within the attention kernels' rounding, measured here as the distance between
    stock's two attention kernels (flash attention on and off: 1.2% of the largest logit on
    this page; fixation's ops, 0.4%); the selection holds every image cell."""
    from foveate.engine import controls as C

    dense = {}
    for fa in (True, False):
        eng, n_past = _page_run(flash_attn=fa)
        dense[fa] = _teacher_forced(eng, n_past, 10, None if fa else tokens)
        tokens = [int(x) for x in dense[True].argmax(1)]
        eng.close()
    tolerance = np.abs(dense[True] - dense[False]).max()
    assert 0 < tolerance < 0.05 * np.abs(dense[True]).max()
    for fa in (True, False):
        eng, n_past = _page_run(flash_attn=fa, fixation=1.0, force=True)
        B.fixation.llama_fixation_reset_stats(eng._ctx)
        got = _teacher_forced(eng, n_past, 10, tokens)
        fs = C.fixation_stats(eng._ctx)
        assert fs.rows == 10 and fs.selected == fs.image_tokens > 0   # sparse, all selected
        assert len(eng.fixation_selection(0)) == fs.image_tokens
        eng.close()
        assert np.abs(got - dense[fa]).max() <= tolerance, (fa, np.abs(got - dense[fa]).max())
        assert (got.argmax(1) == dense[fa].argmax(1)).all()


def test_a_context_with_both_methods_off_runs_no_fixation_hooks():
    """Every image decode passes its marker rows to llama (the marker path of patch 0009);
    with fixation and merging off that must not switch fixation's per-ubatch work on."""
    from foveate import Reader

    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2) as r:
        r.read(PAGE, max_tokens=4)
        assert B.fixation.llama_fixation_active(r.engine._ctx) == 0
    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2, fixation=0.05) as r:
        assert B.fixation.llama_fixation_active(r.engine._ctx) == 1
        r.engine.set_fixation(0.0)
        assert B.fixation.llama_fixation_active(r.engine._ctx) == 0


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    from foveate.instruments.shapes import lfm2

    return lfm2.write_text(tmp_path_factory.mktemp("lfm2") / "lfm2-tiny.gguf")


def test_fixation_fills_its_inputs_on_a_hybrid_model(hybrid):
    """LFM2 (short-convolution layers + attention layers, hybrid memory): the attention
    layers' fixation inputs are filled (they were never set: every step read stale memory),
    the default focal layer is an attention layer, the budget is selected among the image
    cells, and the forced sparse graph at ratio 1 gives the dense logits."""
    from foveate.engine import controls as C
    from foveate.instruments.synthetic_kv import prefill_synthetic

    def run(force=False, **kw):
        eng = Engine(str(hybrid), None, n_ctx=1024, threads=2, flash_attn=True, **kw)
        if force:
            B.fixation.llama_fixation_set_force_sparse(eng._ctx, 1)
        n_past = prefill_synthetic(eng, 300)
        return eng, n_past

    dense, n_past = run()
    want = _teacher_forced(dense, n_past, 6)
    tokens = [int(x) for x in want.argmax(1)]
    dense.close()

    eng, n_past = run(fixation=0.05, fixation_k_min=4)
    B.fixation.llama_fixation_reset_stats(eng._ctx)
    sparse = _teacher_forced(eng, n_past, 6, tokens)
    fs = C.fixation_stats(eng._ctx)
    assert fs.rows == 6 and fs.image_tokens == 300
    assert fs.focal_layers == [2]              # 6 layers: a third is layer 2, an attention layer
    sel = eng.fixation_selection(0)
    assert len(sel) == math.ceil(0.05 * 300) and sel == sorted(set(sel)) and sel[-1] < 300
    assert not np.array_equal(sparse, want)    # it attended to the selection only
    eng.close()

    eng, n_past = run(fixation=1.0, force=True)
    got = _teacher_forced(eng, n_past, 6, tokens)
    assert C.fixation_stats(eng._ctx).rows == 6
    eng.close()
    # within the distance of stock's two attention kernels (as on the bundled reader)
    eng = Engine(str(hybrid), None, n_ctx=1024, threads=2, flash_attn=False)
    fa_off = _teacher_forced(eng, prefill_synthetic(eng, 300), 6, tokens)
    eng.close()
    # twice: on this random-weight model the two distances were 1.37e-3 and 1.34e-3 (garbage
    # inputs, the bug this guards against, moved the logits by their own size)
    assert np.abs(got - want).max() <= 2 * np.abs(fa_off - want).max()


def test_a_recurrent_focal_layer_is_refused(hybrid):
    with pytest.raises(ValueError, match="llama_fixation_set rejected"):
        Engine(str(hybrid), None, n_ctx=512, threads=1, fixation=0.05, focal_layers=[1])


KV_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]


@pytest.mark.parametrize("flash_attn", [True, False])
@pytest.mark.parametrize("kv", KV_TYPES)
def test_every_listed_kv_cache_type_reads_with_fixation_or_is_refused_clearly(kv, flash_attn):
    """-ctk/-ctv take every type in the list: with fixation on, each either reads (the CPU
    ops take F32, F16, BF16 and, with flash attention, quantized K/V) or, where llama.cpp
    cannot (a quantized V without flash attention), fails with one clear error."""
    from foveate import FoveateError
    from foveate.engine.kv_cache import KV_CACHE_TYPES

    assert list(KV_CACHE_TYPES) == KV_TYPES
    quantized = kv not in ("f32", "f16", "bf16")
    try:
        eng, n_past = _page_run(flash_attn=flash_attn, fixation=0.05, fixation_k_min=4,
                                cache_type_k=kv, cache_type_v=kv)
    except (FoveateError, ValueError) as e:
        assert quantized and not flash_attn, f"{kv}: {e}"
        assert "flash" in str(e).lower() or "cache" in str(e).lower(), str(e)
        return
    assert not (quantized and not flash_attn), "llama.cpp refuses a quantized V without flash attention"
    logits = _teacher_forced(eng, n_past, 3)
    assert np.isfinite(logits).all()
    assert len(eng.fixation_selection(0)) > 0
    eng.close()


def test_ordinals_warm_start_and_sample_follow_the_page_not_the_cells():
    """The same page laid out in other cells (an M-RoPE image whose rows reached the cache out
    of reading order): attention does not care about cell order, so the selection, as
    image-token ordinals in reading order ((y, x) on the grid), and the logits are those of
    the page in order. Before, ordinals were ranks in cell order, and the warm start's
    neighbours and the compensation sample were taken in cell order too."""
    from foveate.instruments.synthetic_kv import prefill_synthetic

    n = 400   # a 20 x 20 grid
    eng = Engine(str(MODEL), None, n_ctx=1024, threads=2, flash_attn=True, fixation=0.05,
                 fixation_k_min=4, fixation_dilation=2)
    n_embd = llama.llama_model_n_embd_inp(eng._model)
    embd = np.random.default_rng(7).standard_normal((n, n_embd)).astype(np.float32)
    mem = llama.llama_get_memory(eng._ctx)

    def run(order, tokens=None):
        llama.llama_memory_clear(mem, True)
        n_past = prefill_synthetic(eng, n, image=(embd[order], order))
        sels, logits = [], []
        for i in range(5):
            logits.append(eng.logits().copy())
            eng._decode_one(int(logits[-1].argmax()) if tokens is None else tokens[i], n_past + i)
            sels.append(set(eng.fixation_selection(0)))
        return sels, np.stack(logits)

    in_order, want = run(np.arange(n))
    tokens = [int(x) for x in want.argmax(1)]
    shuffled, got = run(np.random.default_rng(3).permutation(n), tokens)
    eng.close()
    for a, b in zip(in_order, shuffled):
        assert len(a & b) >= 0.8 * len(a), (sorted(a), sorted(b))
    # row 0 is the prefill's last row, a different embedding in each layout
    assert np.abs(got[1:] - want[1:]).max() <= 1e-3 * np.abs(want[1:]).max()
