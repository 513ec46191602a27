"""Every OCR family foveate lists (engine/families.py), end to end on its generated pair (cut
to one or two layers, a small vocab; instruments/shapes/) through the real projector path and
the model's own chat template and markers. These tests back the README's "Supported models"
table row by row:

- `foveate models` names the family;
- a page reads;
- fixation at ratio 1 is bit-identical to off; at 0.05 it selects the budget among the
  sequence's image cells, and the learned marker rows are not among them (they are text to it);
- merging at ratio 1 is identical to off; at 0.5 the kept rows decode at the positions they
  have unmerged (M-RoPE, interleaved M-RoPE, XD-RoPE, 1-D), or consecutive ones on request for
  1-D RoPE, and marker rows are never merged.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from foveate.engine.families import BY_KEY, FAMILIES

PROMPT = "OCR:"
# family -> (shape, writer options): the smallest cut each shape allows
PAIRS = {
    "qwen2vl": ("qwen2-vl-2b", dict(layers=1, vocab=512)),
    "qwen25vl": ("tiny", {}),
    "qwen3vl": ("qwen3-vl-2b", dict(layers=1, vocab=512)),
    "deepseekocr": ("deepseek-ocr", dict(layers=1)),
    "deepseekocr2": ("deepseek-ocr-2", dict(layers=1, vocab=512)),
    "paddleocr": ("paddleocr-vl", dict(layers=1, vocab=512)),
    "lightonocr": ("lightonocr-1b", dict(layers=1, vocab=512)),
    "dotsocr": ("dots-ocr", dict(layers=1, vocab=512)),
    "glm4v": ("glm-4.1v-9b", dict(layers=1, vocab=512)),
    "glmocr": ("glm-ocr", dict(layers=1, vocab=512)),
    "hunyuanvl": ("hunyuan-ocr", dict(layers=1, vocab=512)),
    "idefics3": ("granite-docling-258m", dict(layers=1, vocab=512)),
    # hybrids: 3 / 4 text layers keep a recurrent and an attention layer
    "lfm2vl": ("lfm2-vl-450m", dict(layers=1, vocab=512)),
    "qwen35": ("qwen3.5-0.8b", dict(layers=1, vocab=512)),
    "internvl": ("internvl3-1b", dict(layers=1, vocab=512)),
    "granite4vision": ("granite-vision-4.1-4b", dict(layers=1, vocab=512)),
    "minicpmv46": ("minicpm-v-4.6", dict(layers=1, vocab=512)),
}
ONE_D = {"deepseekocr", "deepseekocr2", "lightonocr", "dotsocr", "idefics3", "lfm2vl",
         "internvl", "granite4vision"}


def test_every_family_is_tested_here():
    assert set(PAIRS) == {f.key for f in FAMILIES}
    for key, (shape, _) in PAIRS.items():
        assert shape in BY_KEY[key].shapes


def _write(shape, out, opts):
    if shape == "tiny":
        from foveate.instruments.shapes.tiny_model import write_tiny_pair
        return write_tiny_pair(out)
    if shape == "deepseek-ocr":
        from foveate.instruments.shapes.deepseek_ocr_shape import write_deepseek_ocr_pair
        return write_deepseek_ocr_pair(out, **opts)
    from foveate.instruments.shapes import write_shape_pair
    return write_shape_pair(shape, out, **opts)


@pytest.fixture(scope="module", params=list(PAIRS))
def family(request, tmp_path_factory):
    """(family key, model path, mmproj path); one family's files on disk at a time."""
    key = request.param
    shape, opts = PAIRS[key]
    out = tmp_path_factory.mktemp(key)
    model, mmproj = _write(shape, out, opts)
    yield key, model, mmproj
    shutil.rmtree(out, ignore_errors=True)


def _markers(key, n, grid):
    """Original ids of the learned marker rows of the page's image chunk (newline ids, others)."""
    if key == "deepseekocr":      # the 1024 px global view: 16 rows of 16 + newline, separator
        assert n == 273
        return {16 + 17 * r for r in range(16)}, {272}
    if key == "deepseekocr2":     # 256 queries + the view separator
        assert n == 257
        return set(), {256}
    if key == "granite4vision":   # the 12 x 12 overview, then rows of (w content + newline)
        from foveate.instruments.shapes.granite4vision import newline_grid
        w, h = newline_grid(448, 224)
        assert n == 144 + h * (w + 1)
        return {144 + r * (w + 1) + w for r in range(h)}, set()
    if key == "hunyuanvl":        # [BOI] (nx + newline) x ny [EOI]
        nx, ny, _ = grid
        assert n == (nx + 1) * ny + 2
        return {1 + r * (nx + 1) + nx for r in range(ny)}, {0, n - 1}
    return set(), set()


def _run(eng, page, steps=3):
    """Prefill the page (positions of the image rows recorded), then greedy steps."""
    seen = []
    eng.image_batch_hook = lambda b: seen.append(
        np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).reshape(b.n_pos, -1).copy())
    n_past, stats = eng.prefill_page(page, PROMPT)
    logits = []
    for i in range(steps):
        logits.append(eng.logits().copy())
        if i < steps - 1:
            eng._decode_one(int(logits[-1].argmax()), n_past + i)
    eng.image_batch_hook = None
    return np.stack(logits), np.concatenate(seen, axis=1), stats


@pytest.fixture(scope="module")
def page():
    from foveate.inputs.images import load_page
    from pathlib import Path
    return load_page(Path(__file__).parent / "data" / "page-hello.png")


def test_foveate_models_names_the_family(family):
    from foveate.surface.cli.models import describe_pair

    key, model, mmproj = family
    text = describe_pair(str(model), str(mmproj))
    line = next(x for x in text.splitlines() if x.startswith("family:"))
    # a fine-tune names its base: "granite-docling / SmolDocling (Idefics3 / SmolVLM fine-tune)"
    assert line == f"family:    {BY_KEY[key].name}" or line.endswith(f"({BY_KEY[key].name} fine-tune)")


def test_fixation_and_merging_end_to_end(family, page):
    from foveate.engine.core import Engine
    from foveate.native import bindings as B
    from foveate.engine import controls as C

    key, model, mmproj = family
    eng = Engine(str(model), str(mmproj), n_ctx=4096, threads=2, flash_attn=True)
    try:
        off, pos_off, st = _run(eng, page)
        n = st.image_tokens
        assert n > 0 and pos_off.shape[1] == n and np.isfinite(off).all()
        newlines, others = _markers(key, n, eng._last_grid)
        markers = newlines | others

        # fixation: ratio 1 is the stock computation, bit for bit
        eng.set_fixation(1.0, 1)
        one, _, _ = _run(eng, page)
        assert np.array_equal(off, one)
        # 0.05: the budget among the image cells, markers excluded (they are text to fixation)
        eng.set_fixation(0.05, 1)
        B.fixation.llama_fixation_reset_stats(eng._ctx)
        _run(eng, page)
        fs = C.fixation_stats(eng._ctx)
        n_cells = n - len(markers)
        assert fs.rows > 0 and fs.image_tokens == n_cells
        sel = eng.fixation_selection(0)
        assert len(sel) == math.ceil(0.05 * n_cells)
        assert sel == sorted(set(sel)) and 0 <= sel[0] and sel[-1] < n_cells
        eng.set_fixation(0.0)

        # merging: ratio 1 changes nothing
        eng.set_merge(1.0)
        one, pos_one, st1 = _run(eng, page)
        assert np.array_equal(off, one) and np.array_equal(pos_off, pos_one)
        assert st1.image_tokens_merged == n
        # 0.5: kept rows at their unmerged positions; markers kept (a newline goes only with
        # its whole row)
        eng.set_merge(0.5, "original")
        _, pos_half, st2 = _run(eng, page, steps=1)
        kept = eng.merge_kept()
        assert kept == sorted(set(kept)) and len(kept) == pos_half.shape[1] < n
        assert np.array_equal(pos_half, pos_off[:, kept])
        assert others <= set(kept)
        content = n - len(markers)
        n_content_kept = len(set(kept) - markers)
        assert n_content_kept == math.floor(0.5 * content)
        # newline collapse (rtprune.md): a newline right after a kept newline goes (its row was
        # merged away whole); every other newline stays
        want, prev_nl = [], False
        for i in sorted((set(kept) - markers) | markers):
            if i in newlines and prev_nl:
                continue
            prev_nl = i in newlines
            want.append(i)
        assert kept == want
        if key in ONE_D:   # 1-D RoPE: consecutive positions on request
            eng.set_merge(0.5, "consecutive")
            _, pos_c, _ = _run(eng, page, steps=1)
            p0 = int(pos_off[0, 0])
            n_chunks = eng._last_grid[2]
            if n_chunks == 1:
                assert pos_c[0].tolist() == list(range(p0, p0 + len(kept)))
            else:   # consecutive in each chunk; a tiled page's marker text sits between chunks
                gaps = np.diff(pos_c[0])
                assert pos_c[0, 0] == p0 and (gaps >= 1).all()
                assert 0 < (gaps > 1).sum() <= n_chunks - 1 and len(pos_c[0]) == len(kept)
    finally:
        eng.close()


def test_a_page_reads_with_both_methods(family):
    from foveate import Reader

    key, model, mmproj = family
    with Reader(model, mmproj, n_ctx=4096, threads=2, fixation=0.05, merge=0.84) as r:
        res = r.read(__import__("pathlib").Path(__file__).parent / "data" / "page-hello.png",
                     max_tokens=4)
    assert res.stats.stop_reason in ("eos", "max_tokens", "repetition")
    assert 0 < res.stats.image_tokens_merged < res.stats.image_tokens


def test_end_of_turn_tokens_stop(family):
    """dots.ocr ends its turn with <|endofassistant|>, which the converted vocab does not mark
    as end of generation: foveate stops on it (and on the vocab's own EOG tokens)."""
    from foveate.engine.core import Engine

    key, model, mmproj = family
    eng = Engine(str(model), str(mmproj), n_ctx=512, threads=1)
    try:
        want = BY_KEY[key].stop_tokens
        assert len(eng.stop_tokens) == len(want)
        for t in eng.stop_tokens:
            assert eng.is_stop(t)
        eos = __import__("foveate.native.bindings", fromlist=["llama"]).llama.llama_vocab_eos(eng._vocab)
        assert eng.is_stop(eos) and not eng.is_stop(eng.n_vocab - 1) or key == "qwen25vl"
    finally:
        eng.close()


def test_bench_rows_run_on_synthetic_image_tokens(family):
    """`foveate bench --image-tokens` and bench_families inject random rows as wide as the
    model's input (Qwen3-VL: 4 x n_embd with deepstack; narrower rows crashed in llama.cpp)."""
    from foveate.engine.core import Engine
    from foveate.instruments.bench import run_configs, run_merge_configs

    key, model, _ = family
    eng = Engine(str(model), None, n_ctx=512, threads=2, flash_attn=True)
    try:
        rows = run_merge_configs(eng, image_tokens=64, n_decode=2, merges=("off", 0.84),
                                 repetitions=1)
        assert rows[1].image_tokens_merged == int(64 * 0.84)
        rows = run_configs(eng, image_tokens=64, n_decode=2, fixations=(0.0, 0.25), repetitions=1)
        assert all(r.decode_tok_s > 0 for r in rows)
    finally:
        eng.close()


def test_marker_rows_stay_text_when_their_cells_move(family, page):
    """A context shift (llama_memory_seq_add) moves the page's cells to other positions: the
    learned marker rows are tagged in their cells, so fixation still counts them as text and
    never selects them. (Keyed by position, as before, they pointed at content rows after
    the shift, and the marker rows became image cells.) 1-D families with markers: M-RoPE
    caches cannot be shifted."""
    from foveate.engine import controls as C
    from foveate.engine.core import Engine
    from foveate.native import bindings as B

    key, model, mmproj = family
    if key not in ONE_D:
        pytest.skip("llama.cpp shifts 1-D positions only")
    eng = Engine(str(model), str(mmproj), n_ctx=4096, threads=2, flash_attn=True)
    try:
        eng.set_fixation(0.05, 1)
        n_past, st = eng.prefill_page(page, PROMPT)
        n = st.image_tokens
        newlines, others = _markers(key, n, eng._last_grid)
        if not newlines | others:
            pytest.skip(f"{key} has no marker rows")
        delta = 3
        B.llama.llama_memory_seq_add(B.llama.llama_get_memory(eng._ctx), 0, 0, -1, delta)
        B.fixation.llama_fixation_reset_stats(eng._ctx)
        tok = int(eng.logits().argmax())
        for i in range(3):
            eng._decode_one(tok, n_past + delta + i)
            tok = int(eng.logits().argmax())
        fs = C.fixation_stats(eng._ctx)
        n_cells = n - len(newlines | others)
        assert fs.rows == 3 and fs.image_tokens == n_cells
        sel = eng.fixation_selection(0)
        assert len(sel) == math.ceil(0.05 * n_cells) and sel[-1] < n_cells
    finally:
        eng.close()


def test_fixation_ops_at_forced_ratio_one_give_the_dense_logits(family, page):
    """The sparse graph forced at ratio 1 (llama_fixation_set_force_sparse: every image cell
    selected, so fixation's ops run where stock attention would) against dense decoding, on
    the family's own attention shape (heads, KV heads, head size, RoPE): within the distance
    between stock's two attention kernels (flash attention on and off) on the same steps."""
    from foveate.engine import controls as C
    from foveate.engine.core import Engine
    from foveate.native import bindings as B

    key, model, mmproj = family

    def steps(flash_attn, force=False, tokens=None):
        eng = Engine(str(model), str(mmproj), n_ctx=4096, threads=2, flash_attn=flash_attn)
        try:
            if force:
                eng.set_fixation(1.0, 1)
                B.fixation.llama_fixation_set_force_sparse(eng._ctx, 1)
            n_past, _ = eng.prefill_page(page, PROMPT)
            B.fixation.llama_fixation_reset_stats(eng._ctx)
            out = []
            for i in range(4):
                out.append(eng.logits().copy())
                eng._decode_one(int(out[-1].argmax()) if tokens is None else tokens[i], n_past + i)
            rows = C.fixation_stats(eng._ctx).rows
        finally:
            eng.close()
        return np.stack(out), rows

    dense, _ = steps(True)
    tokens = [int(x) for x in dense.argmax(1)]
    other, _ = steps(False, tokens=tokens)
    forced, rows = steps(True, force=True, tokens=tokens)
    assert rows == 4                                   # the sparse graph ran every step
    tolerance = max(np.abs(other - dense).max(), 1e-5 * np.abs(dense).max())
    assert np.abs(forced - dense).max() <= 2 * tolerance, (np.abs(forced - dense).max(), tolerance)
