"""Token merging (RTPrune): the C merge against the float64 numpy port of the reference
(tests/rtprune_reference.py) on random inputs, and through mtmd on the bundled reading
model (stock equivalence, positions, stats) and on a DeepSeek-OCR-shaped model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rtprune_reference as ref
from foveate.engine.core import Engine
from foveate.inputs.images import load_page
from foveate.engine.merging import merge_rows, parse_merge, resolve_merge_score

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader" / "foveate-reader-q8_0.gguf"
MMPROJ = ROOT / "models" / "reader" / "foveate-reader-mmproj-f16.gguf"
PAGE = ROOT / "tests" / "data" / "pages" / "heldout-00000.png"


def _embd(n, d, seed):
    rng = np.random.default_rng(seed)
    # a shared direction plus per-row noise and varied norms: cosines spread over [-1, 1]
    base = rng.normal(size=d)
    x = rng.normal(size=(n, d)) + 0.7 * base
    return (x * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32)


def _deepseek_kinds(h, w):
    """One global view: h rows of w content tokens + a newline each, then the view separator."""
    kind = np.zeros(h * (w + 1) + 1, np.uint8)
    kind[w::w + 1] = ref.NEWLINE
    kind[-1] = ref.MARKER
    return kind


@pytest.mark.parametrize("ratio", [0.84, 0.5, 0.1])
def test_fixed_ratio_matches_reference(ratio):
    x = _embd(300, 96, 1)
    rows, kept, terms = merge_rows(x, merge=ratio, threads=2)
    want_rows, want_kept, _ = ref.merge(x, ratio=ratio)
    assert kept.tolist() == want_kept.tolist()
    assert len(kept) == int(300 * ratio)
    np.testing.assert_allclose(rows, want_rows, rtol=2e-5, atol=2e-5)
    assert terms[0] == pytest.approx(ratio)
    # the merge really moved the kept rows (alpha * T x_dropped is not zero)
    assert np.abs(rows - x[kept]).max() > 1e-3


@pytest.mark.parametrize("ratio", [0.84, 0.3])
def test_duplicates_score_matches_reference(ratio):
    x = _embd(300, 96, 4)
    rows, kept, _ = merge_rows(x, merge=ratio, threads=2, score="duplicates")
    want_rows, want_kept, _ = ref.merge(x, ratio=ratio, score="duplicates")
    assert kept.tolist() == want_kept.tolist()
    np.testing.assert_allclose(rows, want_rows, rtol=2e-5, atol=2e-5)
    # a different keep set from the norm's on the same rows: the score is really used
    assert kept.tolist() != merge_rows(x, merge=ratio, threads=2)[1].tolist()


def test_duplicates_score_drops_repeated_rows_first():
    """A page of 40 distinct rows and 60 near-copies of one 'paper' row, the paper rows given
    the largest norms: at keep 0.5 the duplicates score keeps every distinct row and drops 50
    paper rows (the norm criterion would do the opposite)."""
    rng = np.random.default_rng(5)
    d = 32
    distinct = rng.normal(size=(40, d))
    paper = 3.0 * rng.normal(size=d) + 0.01 * rng.normal(size=(60, d))
    order = rng.permutation(100)
    x = np.concatenate([distinct, paper])[order].astype(np.float32)
    is_paper = order >= 40
    _, kept, _ = merge_rows(x, merge=0.5, score="duplicates")
    assert len(kept) == 50
    assert is_paper[kept].sum() == 10 and (~is_paper[kept]).sum() == 40
    _, kept_norm, _ = merge_rows(x, merge=0.5)
    assert is_paper[kept_norm].sum() == 50


def test_bad_merge_score_raises():
    from foveate.native import bindings as B

    with pytest.raises(ValueError, match="merge_score"):
        merge_rows(_embd(10, 8, 0), merge=0.5, score="largest")
    with pytest.raises(ValueError, match="merge_score"):
        Engine(str(MODEL), str(MMPROJ), n_ctx=512, merge=0.84, merge_score="largest")
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=512, merge=0.84, merge_score="duplicates")
    assert B.merge.mtmd_merge_set_score(eng._mtmd, 2) == -1      # the C API refuses it too
    assert B.merge.mtmd_merge_get_score(eng._mtmd) == B.MERGE_SCORES["duplicates"]
    eng.close()


def test_dynamic_ratio_matches_reference_on_pixels():
    h, w = 8, 8
    x = _embd(h * (w + 1) + 1, 64, 2)
    kind = _deepseek_kinds(h, w)
    rng = np.random.default_rng(3)
    pix = np.ones((h * 16, w * 16, 3), np.float32)              # white page in [-1, 1]
    ink = rng.random((h * 16, w * 16)) < 0.08                    # sparse dark strokes
    pix[ink] = -1.0
    rows, kept, terms = merge_rows(x, kind, pix, patch=16, merge="auto", threads=2)
    want_rows, want_kept, want_terms = ref.merge(x, kind, ratio=None, pixels=pix, patch=16)
    assert terms[1] == pytest.approx(want_terms[1], abs=1e-5)    # r_sim
    assert terms[2] == pytest.approx(want_terms[2], abs=1e-6)    # r_info
    assert terms[0] == pytest.approx(want_terms[0], abs=1e-5)
    assert 0.0 < terms[0] < 1.0
    assert kept.tolist() == want_kept.tolist()
    np.testing.assert_allclose(rows, want_rows, rtol=2e-5, atol=2e-5)
    # markers are never merged: their rows come back bit for bit
    for j, i in enumerate(kept):
        if kind[i] != ref.CONTENT:
            assert np.array_equal(rows[j], x[i])
    assert kept[-1] == len(x) - 1                                 # the separator stays


def test_blank_patch_edge_count_matches_the_reference_pitfall():
    # rtprune.md: a white 64 x 64 patch with per-patch zero padding scores 252/4096
    x = _embd(5, 8, 4)
    _, _, terms = merge_rows(x, pixels=np.ones((64, 64, 3), np.float32), patch=64, merge="auto")
    assert terms[2] == pytest.approx(252 / 4096, abs=1e-7)


def test_newline_of_a_fully_merged_row_is_dropped():
    h, w = 4, 6
    kind = _deepseek_kinds(h, w)
    x = _embd(len(kind), 32, 5)
    x[(w + 1):(w + 1) + w] *= 1e-3             # row 1 has the smallest norms: merged away first
    rows, kept, _ = merge_rows(x, kind, merge=(3 * w) / (4 * w))
    want_rows, want_kept, _ = ref.merge(x, kind, ratio=0.75)
    assert kept.tolist() == want_kept.tolist()
    assert (2 * w + 1) not in kept.tolist()    # row 1's newline followed row 0's newline
    assert w in kept.tolist()                   # row 0's newline stays


def test_keep_ratio_one_changes_no_row():
    x = _embd(50, 16, 6)
    rows, kept, _ = merge_rows(x, merge=1.0)
    assert kept.tolist() == list(range(50))
    assert np.array_equal(rows, x)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", float("nan")])
def test_bad_merge_settings_raise(bad):
    with pytest.raises(ValueError, match="merge"):
        parse_merge(bad)


def test_parse_merge():
    assert parse_merge(None)[0] == parse_merge("off")[0] == parse_merge(0)[0] == 0
    assert parse_merge("auto")[0] == 2
    assert parse_merge(0.84) == (1, 0.84) and parse_merge("0.5") == (1, 0.5)


# --- through mtmd on the bundled reading model (Qwen2.5-VL graph, M-RoPE) ----------------------

def _prefill(merge, hook=None, **engine_kw):
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge=merge, **engine_kw)
    eng.image_batch_hook = hook
    n_past, stats = eng.prefill_page(load_page(PAGE))
    return eng, n_past, stats, eng.logits().copy()


def test_keep_ratio_one_is_bit_identical_to_off():
    e0, p0, s0, off = _prefill(None)
    e1, p1, s1, one = _prefill(1.0)
    assert p0 == p1 and np.array_equal(off, one)
    assert s1.image_tokens_merged == s1.image_tokens == s0.image_tokens
    e0.close(), e1.close()


def test_merged_image_keeps_its_mrope_positions():
    batches = []

    def hook(b):
        n, npos = b.n_tokens, b.n_pos
        batches.append(np.ctypeslib.as_array(b.pos, shape=(npos * n,)).reshape(npos, n).copy())

    e0, p0, s0, _ = _prefill(None)
    eng, p1, s1, _ = _prefill(0.84, hook)
    kept = eng.merge_kept()
    n_img = s0.image_tokens
    assert s1.image_tokens == n_img and s1.image_tokens_merged == len(kept) == int(n_img * 0.84)
    assert s1.merge_ratio == pytest.approx(0.84)
    assert p1 == p0                                   # text after the image: same positions
    pos = np.concatenate(batches, axis=1)             # [t, y, x, z] x kept tokens
    nx = 24                                           # page width in tokens
    t0 = pos[0, 0]
    assert (pos[0] == t0).all()
    assert pos[1].tolist() == [t0 + i // nx for i in kept]
    assert pos[2].tolist() == [t0 + i % nx for i in kept]
    e0.close(), eng.close()


def test_duplicates_score_drops_blank_cells_of_the_page():
    """On the bundled reader's page, the rows merged away at 0.84 are blank cells when ranked by
    near-duplicates; the norm ranking drops characters (docs/benchmarks.md)."""
    from foveate.native import bindings as B

    lines = PAGE.with_suffix(".txt").read_text().split("\n")
    cols = 24

    def is_char(i):
        r, c = divmod(i, cols)
        return r < len(lines) and c < len(lines[r]) and lines[r][c] != " "

    chars_dropped = {}
    for score in ("norm", "duplicates"):
        eng, _, st, _ = _prefill(0.84, merge_score=score)
        assert B.merge.mtmd_merge_get_score(eng._mtmd) == B.MERGE_SCORES[score]
        dropped = sorted(set(range(st.image_tokens)) - set(eng.merge_kept()))
        assert len(dropped) == st.image_tokens - int(st.image_tokens * 0.84)
        chars_dropped[score] = sum(map(is_char, dropped)) / len(dropped)
        eng.close()
    assert chars_dropped["duplicates"] <= 0.1 < chars_dropped["norm"]


def test_merge_score_auto_is_norm_on_deepseek_ocr_and_duplicates_elsewhere():
    from foveate.native import bindings as B

    assert resolve_merge_score("auto", "deepseekocr") == "norm"
    assert resolve_merge_score("auto", "qwen2.5vl_merger") == "duplicates"
    assert resolve_merge_score("norm", "qwen2.5vl_merger") == "norm"
    with pytest.raises(ValueError, match="merge_score"):
        resolve_merge_score("largest", "deepseekocr")
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge=0.84)   # default: auto
    assert eng.projector_type == "qwen2.5vl_merger" and eng.merge_score == "duplicates"
    assert B.merge.mtmd_merge_get_score(eng._mtmd) == B.MERGE_SCORES["duplicates"]
    eng.set_merge(0.84, score="norm")
    assert B.merge.mtmd_merge_get_score(eng._mtmd) == B.MERGE_SCORES["norm"]
    eng.close()


def test_dynamic_ratio_reads_the_page():
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge="auto")
    res = eng.read(load_page(PAGE), max_tokens=40)
    st = res.stats
    # never below the family's floor (README: --merge auto keeps >= 0.84 on every family but
    # DeepSeek-OCR, where RTPrune's formula runs free); this page sits at the floor
    assert 0.84 <= st.merge_ratio < 1.0
    assert st.image_tokens_merged == int(st.image_tokens * st.merge_ratio)
    assert st.merge_ms > 0 and res.text
    eng.close()


def test_fixation_selects_among_merged_tokens():
    import math

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge=0.5,
                 fixation=0.05, fixation_k_min=4)
    res = eng.read(load_page(PAGE), max_tokens=6)
    n_kept = res.stats.image_tokens_merged
    assert n_kept == int(res.stats.image_tokens * 0.5)
    sel = eng.fixation_selection(0)
    assert len(sel) == math.ceil(0.05 * n_kept)      # the budget counts merged tokens
    assert max(sel) < n_kept
    eng.close()


def test_two_images_in_one_prompt_are_merged_each():
    """Two pages in one prompt: each image chunk is merged on its own, and (M-RoPE) the text
    after them sits where it would without merging."""
    import ctypes

    from foveate.native import bindings as B
    from foveate.engine.core import Stats

    mtmd = B.mtmd
    page = load_page(PAGE)
    out = {}
    for merge in (None, 0.5):
        eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge=merge)
        text = f"{eng.marker}\n{eng.marker}\nRead both.".encode()
        pixels = (ctypes.c_uint8 * len(page.rgb)).from_buffer_copy(page.rgb)
        bms = [mtmd.mtmd_bitmap_init(page.width, page.height, pixels) for _ in range(2)]
        chunks = mtmd.mtmd_input_chunks_init()
        inp = mtmd.mtmd_input_text(text=text, text_len=len(text), add_special=True, parse_special=True)
        arr = (mtmd.mtmd_bitmap_p_ctypes * 2)(*bms)
        assert mtmd.mtmd_tokenize(eng._mtmd, chunks, ctypes.byref(inp), arr, 2) == 0
        st = Stats()
        n = mtmd.mtmd_input_chunks_size(chunks)
        st.image_tokens = sum(mtmd.mtmd_input_chunk_get_n_tokens(mtmd.mtmd_input_chunks_get(chunks, i))
                              for i in range(n) if mtmd.mtmd_input_chunk_get_type(
                                  mtmd.mtmd_input_chunks_get(chunks, i)) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE)
        n_past = eng._prefill(chunks, n, page, st)
        out[merge] = (n_past, st.image_tokens, st.image_tokens_merged, eng.logits().copy())
        mtmd.mtmd_input_chunks_free(chunks)
        for b in bms:
            mtmd.mtmd_bitmap_free(b)
        eng.close()
    (p0, n0, m0, l0), (p1, n1, m1, l1) = out[None], out[0.5]
    assert n0 == n1 == 2 * 408 and m0 == n0
    assert m1 == 2 * int(408 * 0.5)
    assert p1 == p0
    assert np.isfinite(l1).all() and not np.array_equal(l0, l1)


def test_merging_through_the_batch_api(monkeypatch):
    """llama-server and llama-mtmd-cli encode through mtmd_batch_* (patches/0008). With
    merging on, an image batch refuses a second chunk, mtmd_batch_get_output_embd returns the
    image's merged rows (as many as the chunk reports), and the page reads exactly as through
    mtmd_encode_chunk."""
    import ctypes

    from foveate import Reader
    from foveate.native import bindings as B

    lib, p = B.merge, ctypes.c_void_p
    lib.mtmd_batch_init.argtypes, lib.mtmd_batch_init.restype = [p], p
    lib.mtmd_batch_add_chunk.argtypes, lib.mtmd_batch_add_chunk.restype = [p, p], ctypes.c_int32
    lib.mtmd_batch_encode.argtypes, lib.mtmd_batch_encode.restype = [p], ctypes.c_int32
    lib.mtmd_batch_get_output_embd.argtypes = [p, p]
    lib.mtmd_batch_get_output_embd.restype = ctypes.POINTER(ctypes.c_float)
    lib.mtmd_batch_free.argtypes, lib.mtmd_batch_free.restype = [p], None

    png = Path(__file__).parent / "data" / "pages-document" / "heldout-00003.png"
    reader_dir = Path(__file__).resolve().parents[1] / "models" / "reader"
    with Reader(reader_dir / "foveate-reader-layout-q8_0.gguf",
                reader_dir / "foveate-reader-mmproj-f16.gguf", n_ctx=2048, threads=2,
                merge=0.84) as r:
        via_chunk = r.read(png, max_tokens=300)
        batches = []
        n_image = [via_chunk.stats.image_tokens]

        def encode_in_a_batch(mctx, chunk):
            b = lib.mtmd_batch_init(mctx)
            batches.append(b)
            assert lib.mtmd_batch_add_chunk(b, chunk) == 0
            assert lib.mtmd_batch_add_chunk(b, chunk) == 2   # merging: one image per batch
            assert lib.mtmd_batch_encode(b) == 0
            assert lib.mtmd_batch_get_output_embd(b, chunk)
            n_kept = B.mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            assert 0 < n_kept < n_image[0]        # the chunk reports the rows the batch holds
            # a new setting leaves the encoded rows as they are: the chunk still describes
            # them until it is encoded again
            assert B.merge.mtmd_merge_set(mctx, B.MERGE_FIXED, 0.84) == 0
            assert lib.mtmd_batch_get_output_embd(b, chunk)
            assert B.mtmd.mtmd_input_chunk_get_n_tokens(chunk) == n_kept
            rc = lib.mtmd_batch_encode(b)
            batches.append(lib.mtmd_batch_get_output_embd(b, chunk))
            return rc

        monkeypatch.setattr(B.mtmd, "mtmd_encode_chunk", encode_in_a_batch)
        monkeypatch.setattr(B.mtmd, "mtmd_get_output_embd", lambda mctx: batches[-1])
        try:
            via_batch = r.read(png, max_tokens=300)
        finally:
            monkeypatch.undo()
            lib.mtmd_batch_free(batches[0])
    assert len(batches) == 2
    assert via_chunk.stats.image_tokens_merged == via_batch.stats.image_tokens_merged == 524
    assert via_batch.text == via_chunk.text
