"""DeepSeek-OCR-2-shaped random GGUFs (instruments/shapes/deepseekocr2.py): the real model's
tensor list and parameter counts at full size (no data written), deterministic files, and a
cut pair (2 text / 3 SAM / 2 encoder layers, 512-token vocab; ~680 MB) that llama.cpp / mtmd
load and read a page with, merged and tiled."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from foveate.instruments.shapes import deepseekocr2 as D, family_module
from shape_checks import sha256

SHAPE = "deepseek-ocr-2"
PROMPT = "Free OCR."


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return D.write_pair(tmp_path_factory.mktemp("deepseekocr2"), SHAPE, layers=2, vocab=512)


def _ocr2_image_tokens(width: int, height: int) -> list[int]:
    """DeepSeek-OCR-2's published rule, restated: the 1024 px global view gives 256 query
    tokens + 1 view separator; a page with a side over 768 px is also cut into 768 px tiles
    (dynamic_preprocess, 2..6 tiles, the grid whose aspect ratio is closest to the page's),
    144 tokens each, in chunks before the global view."""
    if max(width, height) <= 768:
        return [257]
    grids = [(w, h) for n in range(2, 7) for w in range(1, n + 1) for h in range(1, n + 1)
             if 2 <= w * h <= 6]
    grids = sorted(dict.fromkeys(grids), key=lambda g: g[0] * g[1])
    best = min(grids, key=lambda g: abs(width / height - g[0] / g[1]))   # first of the ties
    return [144] * (best[0] * best[1]) + [257]


def test_shape_is_discovered():
    assert family_module(SHAPE) is D


def test_full_size_matches_the_real_model():
    text = {n: (s, t) for n, s, t, _ in D.text_tensors(SHAPE)}
    proj = {n: (s, t) for n, s, t, _ in D.mmproj_tensors(SHAPE)}
    # the text model is DeepSeek-OCR's: 12 layers (1 dense, 11 MoE), untied lm_head
    assert len(text) == 155
    assert text["token_embd.weight"] == text["output.weight"] == ((129280, 1280), np.float16)
    assert text["blk.11.ffn_up_exps.weight"][0] == (64, 896, 1280)
    assert text["blk.11.ffn_gate_inp.weight"] == ((64, 1280), np.float32)
    # SAM: 3 embeddings + 12 blocks x 14 + neck 6 + net_2 + net_3; Qwen2 encoder: 24 x 12
    # + post_ln; 2 query banks; fc w + b; the view separator
    assert len(proj) == 3 + 12 * 14 + 8 + 24 * 12 + 1 + 2 + 2 + 1 == 473
    assert proj["v.sam.patch_embd.weight"] == ((768, 3, 16, 16), np.float16)
    assert proj["v.sam.pos_embd.weight"] == ((1, 64, 64, 768), np.float32)
    assert proj["v.sam.blk.2.attn.pos_h.weight"][0] == (127, 64)     # global attention
    assert proj["v.sam.blk.3.attn.pos_h.weight"][0] == (27, 64)      # 14 x 14 window
    assert proj["v.sam.net_2.weight"] == ((512, 256, 3, 3), np.float32)
    assert proj["v.sam.net_3.weight"] == ((896, 512, 3, 3), np.float32)   # 896, not v1's 1024
    assert proj["v.blk.23.attn_q.weight"] == ((896, 896), np.float16)
    assert proj["v.blk.23.attn_k.weight"][0] == proj["v.blk.23.attn_v.weight"][0] == (128, 896)
    assert proj["v.blk.23.attn_q.bias"] == ((896,), np.float32)
    assert "v.blk.0.attn_out.bias" not in proj and "v.blk.0.ln1.bias" not in proj   # Qwen2
    assert proj["v.blk.23.ffn_gate.weight"][0] == (4864, 896)
    assert proj["v.blk.23.ffn_down.weight"][0] == (896, 4864)
    assert proj["v.resample_query_1024.weight"] == ((256, 896), np.float16)
    assert proj["v.resample_query_768.weight"] == ((144, 896), np.float16)
    assert proj["mm.model.fc.weight"] == ((1280, 896), np.float16)
    assert proj["v.view_seperator"] == ((1, 1280), np.float32)
    assert "v.image_newline" not in proj and "v.class_embd" not in proj   # no newline, no CLIP

    sizes = D.sizes(SHAPE)
    assert sizes["text"]["params"] == 2_934_734_080          # = DeepSeek-OCR's decoder
    assert sizes["mmproj"]["params"] == 454_385_280          # SAM ~96 M + Qwen2 358 M + fc
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    assert 3.3e9 < total < 3.5e9                             # published: 3.39 B ("3B")
    assert 5.8e9 < sizes["text"]["bytes"] < 5.9e9
    assert 0.9e9 < sizes["mmproj"]["bytes"] < 0.95e9


def test_generator_is_deterministic(tmp_path):
    a = D.write_pair(tmp_path / "a", SHAPE, layers=1, seed=3, vocab=512)
    b = D.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=512)
    assert [p.name for p in a] == [f"{SHAPE}-f16.gguf", f"{SHAPE}-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0]) and sha256(a[1]) == sha256(b[1])
    c = D.write_pair(tmp_path / "c", SHAPE, layers=1, seed=4, vocab=512)
    assert sha256(c[0]) != sha256(a[0]) and sha256(c[1]) != sha256(a[1])


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "deepseek2-ocr"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 2 and kv(f"{a}.leading_dense_block_count") == 1
    assert kv(f"{a}.expert_count") == 64 and kv(f"{a}.expert_used_count") == 6
    assert kv(f"{a}.vocab_size") == len(kv("tokenizer.ggml.tokens")) == 512
    toks = kv("tokenizer.ggml.tokens")
    assert toks[kv("tokenizer.ggml.bos_token_id")] == "<｜begin▁of▁sentence｜>" == toks[0]
    assert toks[kv("tokenizer.ggml.eos_token_id")] == "<｜end▁of▁sentence｜>" == toks[1]
    assert kv("tokenizer.chat_template") == D.CHAT_TEMPLATE
    want = {n: (s, d) for n, s, d, _ in D.text_tensors(SHAPE, 2, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "deepseekocr2"
    assert kv("clip.vision.embedding_length") == 896 and kv("clip.vision.block_count") == 2
    assert kv("clip.vision.attention.head_count") == 14
    assert kv("clip.vision.attention.head_count_kv") == 2
    assert kv("clip.vision.feed_forward_length") == 4864
    assert kv("clip.vision.projection_dim") == 1280
    assert kv("clip.vision.sam.block_count") == 3        # llama.cpp needs SAM's global layer 2
    assert kv("clip.vision.preproc_max_tiles") == 6
    want = {n: (s, d) for n, s, d, _ in D.mmproj_tensors(SHAPE, 2)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    sizes = D.sizes(SHAPE, 2, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        st = r.read(page, prompt=PROMPT, max_tokens=4).stats
    # 448 x 224: within one 768 px tile, the global view only
    assert st.image_tokens == sum(_ocr2_image_tokens(448, 224)) == 257
    assert st.encode_ms > 0 and st.prefill_ms > 0
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"


def _chunk_tokens(eng, path) -> list[int]:
    """Rows of each image chunk mtmd makes of a page (tokenized only, nothing encoded)."""
    from foveate.inputs.images import load_page
    from foveate.native import bindings as B

    mtmd = B.mtmd
    page = load_page(path)
    text = eng.format_prompt(PROMPT).encode()
    pixels = (ctypes.c_uint8 * len(page.rgb)).from_buffer_copy(page.rgb)
    bitmap = mtmd.mtmd_bitmap_init(page.width, page.height, pixels)
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        inp = mtmd.mtmd_input_text(text=text, text_len=len(text), add_special=True,
                                   parse_special=True)
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd.mtmd_tokenize(eng._mtmd, chunks, ctypes.byref(inp), bitmaps, 1) == 0
        out = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            ch = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                out.append(mtmd.mtmd_input_chunk_get_n_tokens(ch))
        return out
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)


@pytest.mark.parametrize("size", [(448, 224), (768, 768), (1536, 768), (2000, 700),
                                  (800, 1200), (769, 500), (3000, 3000)])
def test_tiles_follow_the_published_rule(pair, tmp_path, size):
    from PIL import Image

    from foveate.engine.core import Engine

    path = tmp_path / "p.png"
    Image.new("RGB", size, "white").save(path)
    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=8192, threads=1)
    try:
        got = _chunk_tokens(eng, path)
    finally:
        eng.close()
    assert got == _ocr2_image_tokens(*size) == D.image_tokens(*size)


def test_merging_keeps_the_view_separator(pair, page):
    """The view separator is the only learned row: clip exposes it (v.view_seperator), the
    merge finds it, never merges it and ranks the 256 query rows alone."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=4096, threads=1, merge=0.5)
    try:
        n_past, st = eng.prefill_page(load_page(page), prompt=PROMPT)
        kept = eng.merge_kept()
        assert st.image_tokens == 257
        assert kept[-1] == 256                                   # the separator stays
        assert len(kept) == st.image_tokens_merged == 128 + 1
        eng._decode_one(0, n_past)                               # decoding goes on
    finally:
        eng.close()


def test_tiled_image_is_merged_as_one_pool(pair, tmp_path):
    """A 1536 x 768 page is two 768 px tiles (144 query rows each, no markers) and the global
    view (256 + separator), three mtmd chunks; the merge ranks all 544 query rows together:
    floor(544 r), not 2 floor(144 r) + floor(256 r)."""
    import gguf
    from PIL import Image

    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    sep = next(np.asarray(x.data, np.float32).ravel() for x in gguf.GGUFReader(mmproj).tensors
               if x.name == "v.view_seperator")
    page = tmp_path / "wide.png"
    img = Image.new("RGB", (1536, 768), "white")
    img.paste((0, 0, 0), (100, 300, 1400, 360))
    img.save(page)
    ratio = 0.123                       # floor(544 r) = 66; per chunk 17 + 17 + 31 = 65
    eng = Engine(model, mmproj, n_ctx=4096, threads=1, merge=ratio)
    rows = []
    eng.image_batch_hook = lambda b: rows.append(
        np.ctypeslib.as_array(b.embd, shape=(b.n_tokens * b.n_embd,)).reshape(b.n_tokens, b.n_embd).copy())
    try:
        _, st = eng.prefill_page(load_page(page), prompt=PROMPT)
        assert st.image_tokens == 144 + 144 + 257
        e = np.concatenate(rows)
        is_sep = (e == sep).all(1)
        assert int(is_sep.sum()) == 1
        assert int((~is_sep).sum()) == int(544 * ratio) == 66
        assert st.image_tokens_merged == len(e)
    finally:
        eng.close()
