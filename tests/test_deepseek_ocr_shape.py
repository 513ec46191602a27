"""DeepSeek-OCR-shaped random GGUFs: deterministic, the real model's shapes, and the pair
loads in llama.cpp / mtmd and reads a page (cut to 2 layers; ~1.3 GB, ~40 s on one thread)."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes.deepseek_ocr_shape import (DEEPSEEK_OCR_SHAPE as S, deepseek_ocr_sizes,
                                        mmproj_tensors, text_tensors,
                                        write_deepseek_ocr_mmproj, write_deepseek_ocr_pair)
from shape_checks import sha256


@pytest.fixture(scope="module")
def ds_pair(tmp_path_factory):
    return write_deepseek_ocr_pair(tmp_path_factory.mktemp("deepseek-ocr"), layers=2)


def test_generator_is_deterministic(tmp_path):
    a = write_deepseek_ocr_pair(tmp_path / "a", layers=1, seed=3)
    b = write_deepseek_ocr_pair(tmp_path / "b", layers=1, seed=3)
    assert [p.name for p in a] == ["deepseek-ocr-f16.gguf", "deepseek-ocr-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0])
    assert sha256(a[1]) == sha256(b[1])
    other = write_deepseek_ocr_mmproj(tmp_path / "c.gguf", layers=1, seed=9)  # pair used 3 + 1
    assert sha256(other) != sha256(a[1])
    for p in (*a, *b, other):
        p.unlink()


def test_full_size_matches_the_real_model():
    text = {n: s for n, s, _, _ in text_tensors()}
    proj = {n: s for n, s, _, _ in mmproj_tensors()}
    # what llama.cpp's converter makes of deepseek-ai/DeepSeek-OCR
    assert len(text) == 155 and len(proj) == 476
    assert sum(n.startswith("blk.") and n.endswith("attn_q.weight") for n in text) == 12
    assert sum(n.endswith("attn.qkv.weight") for n in proj) == 12   # SAM ViT-B
    assert sum(n.endswith("attn_qkv.weight") for n in proj) == 24   # CLIP-L
    assert text["token_embd.weight"] == text["output.weight"] == (129280, 1280)
    assert text["blk.0.attn_q.weight"] == text["blk.0.attn_k.weight"] == (1280, 1280)
    assert text["blk.0.ffn_gate.weight"] == (6848, 1280)
    assert "blk.0.ffn_gate_inp.weight" not in text and "blk.1.ffn_gate.weight" not in text
    assert text["blk.11.ffn_gate_inp.weight"] == (64, 1280)
    assert text["blk.11.ffn_up_exps.weight"] == (64, 896, 1280)
    assert text["blk.11.ffn_down_exps.weight"] == (64, 1280, 896)
    assert text["blk.11.ffn_gate_shexp.weight"] == (2 * 896, 1280)
    assert proj["v.sam.patch_embd.weight"] == (768, 3, 16, 16)
    assert proj["v.sam.pos_embd.weight"] == (1, 64, 64, 768)
    for i in range(12):
        rel = 127 if i in (2, 5, 8, 11) else 27
        assert proj[f"v.sam.blk.{i}.attn.pos_h.weight"] == (rel, 64)
    assert proj["v.sam.blk.0.mlp.lin1.weight"] == (3072, 768)
    assert proj["v.sam.neck.0.weight"] == (256, 768, 1, 1)
    assert proj["v.sam.net_2.weight"] == (512, 256, 3, 3)
    assert proj["v.sam.net_3.weight"] == (1024, 512, 3, 3)
    assert proj["v.position_embd.weight"] == (257, 1024)
    assert proj["v.blk.23.ffn_up.weight"] == (4096, 1024)
    assert proj["mm.model.fc.weight"] == (1280, 2048)
    assert proj["v.image_newline"] == (1280,) and proj["v.view_seperator"] == (1, 1280)

    sizes = deepseek_ocr_sizes()
    assert sizes["text"]["params"] == 2_934_734_080
    assert sizes["mmproj"]["params"] == 401_372_160
    assert 5.8e9 < sizes["text"]["bytes"] < 5.9e9
    assert 0.8e9 < sizes["mmproj"]["bytes"] < 0.85e9


def test_files_read_back(ds_pair):
    import gguf

    model, mmproj = ds_pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "deepseek2-ocr"
    assert kv("general.architecture") == a == S["arch"]
    assert kv(f"{a}.embedding_length") == 1280
    assert kv(f"{a}.block_count") == 2
    assert kv(f"{a}.feed_forward_length") == 6848
    assert kv(f"{a}.attention.head_count") == kv(f"{a}.attention.head_count_kv") == 10
    assert kv(f"{a}.leading_dense_block_count") == 1
    assert kv(f"{a}.expert_count") == 64 and kv(f"{a}.expert_used_count") == 6
    assert kv(f"{a}.expert_shared_count") == 2
    assert kv(f"{a}.expert_feed_forward_length") == 896
    assert kv(f"{a}.vocab_size") == len(kv("tokenizer.ggml.tokens")) == 129280
    assert kv("tokenizer.ggml.bos_token_id") == 0 and kv("tokenizer.ggml.eos_token_id") == 1
    want = {n: (s, d) for n, s, d, _ in text_tensors(2)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    assert "blk.0.ffn_gate.weight" in got and "blk.1.ffn_gate_exps.weight" in got
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "deepseekocr"
    assert kv("clip.vision.projection_dim") == 1280
    assert kv("clip.vision.embedding_length") == 1024
    assert kv("clip.vision.block_count") == 2
    assert kv("clip.vision.sam.block_count") == 3  # llama.cpp needs SAM's global layer 2
    assert kv("clip.vision.sam.embedding_length") == 768
    want = {n: s for n, s, _, _ in mmproj_tensors(2)}
    got = {t.name: tuple(int(x) for x in t.shape[::-1]) for t in r.tensors}
    assert got == want

    sizes = deepseek_ocr_sizes(2)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_pair_reads_a_page(ds_pair, page):
    from foveate import Reader
    from foveate.instruments.bench import run_once

    model, mmproj = ds_pair
    with Reader(model, mmproj, n_ctx=2048, threads=1) as r:
        res = r.read(page, prompt="Free OCR.", max_tokens=4)
        st = res.stats
        # a page within one 640 px tile: the 1024 px global view only, 16 x (16 + 1) + 1
        assert st.image_tokens == S["image_tokens_global"] == 273
        assert st.encode_ms > 0 and st.prefill_ms > 0
        assert st.stop_reason in ("max_tokens", "eos")
        assert st.tokens_generated == 4 or st.stop_reason == "eos"
        # bench's synthetic path: 1-D positions, as mtmd gives DeepSeek-OCR
        row = run_once(r.engine, image_tokens=64, n_decode=2)
        assert row.image_tokens == 64 and row.decode_tok_s > 0


@pytest.mark.parametrize("positions", ["original", "consecutive"])
def test_pair_reads_with_merging(ds_pair, page, positions):
    """Token merging end to end on the DeepSeek-OCR layout: newline / view-separator rows are
    found, never merged, collapsed by the reference rule; 1-D positions are the kept rows'
    original ones (gaps; n_past as if unmerged) or renumbered, as asked."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = ds_pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=1, merge_positions=positions)
    seen = []
    eng.image_batch_hook = lambda b: seen.append(
        (b.n_pos, np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).copy()))
    n_past_off, _ = eng.prefill_page(load_page(page), prompt="Free OCR.")
    p0 = int(seen[0][1][0])                                     # the image's first position, unmerged
    seen.clear()
    eng.set_merge(0.5)
    n_past, st = eng.prefill_page(load_page(page), prompt="Free OCR.")
    kept = eng.merge_kept()
    w, h = 16, 16
    newline = {r * (w + 1) + w for r in range(h)}
    content_kept = [i for i in kept if i not in newline and i != 272]
    assert len(content_kept) == int(256 * 0.5)
    assert kept[-1] == 272                                      # the separator stays
    # a row's newline stays unless the row lost all its content (after the first kept newline)
    want_nl, prev_nl = [], False
    for i in sorted(set(content_kept) | newline):
        if i in newline:
            if not prev_nl:
                want_nl.append(i)
            prev_nl = True
        else:
            prev_nl = False
    assert [i for i in kept if i in newline] == want_nl
    assert st.image_tokens == 273 and st.image_tokens_merged == len(kept)
    pos = np.concatenate([p for n, p in seen])
    assert all(n == 1 for n, _ in seen)
    if positions == "original":
        assert pos.tolist() == [p0 + i for i in kept]
        assert n_past == n_past_off                             # text after: as if unmerged
    else:
        assert pos.tolist() == list(range(p0, p0 + len(kept)))
        assert n_past == n_past_off - (273 - len(kept))
    assert eng.logits() is not None
    eng._decode_one(0, n_past)                                  # decoding goes on
    eng.close()


def test_1d_position_gaps_need_the_context_opt_in(ds_pair):
    """Stock's rule (1-D positions consecutive) holds unless the context opts in; with the
    opt-in, positions may jump forward but never repeat or go back."""
    from foveate.native import bindings as B
    from foveate.engine.core import Engine
    from foveate.errors import DecodeError

    llama = B.llama
    model, mmproj = ds_pair
    eng = Engine(model, None, n_ctx=256, threads=1)
    eng._decode_one(5, 0)
    with pytest.raises(DecodeError):
        eng._decode_one(5, 3)                                   # a gap: rejected by default
    B.fixation.llama_foveate_allow_position_gaps(eng._ctx, True)
    eng._decode_one(5, 3)                                       # now accepted
    for bad in (3, 2):                                          # repeat, backwards
        with pytest.raises(DecodeError):
            eng._decode_one(5, bad)
    eng._decode_one(5, 10)
    batch = llama.llama_batch_init(2, 0, 1)                     # inside one batch too
    try:
        for pos in ((12, 12), (14, 13)):                        # a repeat; a step back
            batch.n_tokens = 2
            for i in range(2):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = 5, pos[i], 1
                batch.seq_id[i][0], batch.logits[i] = 0, i == 1
            assert llama.llama_decode(eng._ctx, batch) != 0, pos
    finally:
        llama.llama_batch_free(batch)
    B.fixation.llama_foveate_allow_position_gaps(eng._ctx, False)
    with pytest.raises(DecodeError):
        eng._decode_one(5, 12)
    eng._decode_one(5, 11)
    eng.close()


def test_tiled_image_is_merged_as_one_pool(ds_pair, tmp_path):
    """Gundam: a 1280 x 640 page is one row of two 640 tiles (20 x 10 tokens + a newline per
    token row) and the 1024 global view (16 x 17 + separator), in two mtmd chunks; the merge
    ranks all 456 content tokens together: floor(456 r), not floor(200 r) + floor(256 r)."""
    import gguf
    from PIL import Image

    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = ds_pair
    t = {x.name: np.asarray(x.data, np.float32).ravel() for x in gguf.GGUFReader(mmproj).tensors
         if x.name in ("v.image_newline", "v.view_seperator")}
    page = tmp_path / "wide.png"
    img = Image.new("RGB", (1280, 640), "white")
    img.paste((0, 0, 0), (100, 200, 900, 260))
    img.save(page)
    ratio = 0.123                                  # floor(456 r) = 56, per chunk 24 + 31 = 55
    eng = Engine(model, mmproj, n_ctx=4096, threads=2, merge=ratio)
    assert eng.merge_score == "norm"               # merge_score "auto" on DeepSeek-OCR: RTPrune's
    rows = []
    eng.image_batch_hook = lambda b: rows.append(
        np.ctypeslib.as_array(b.embd, shape=(b.n_tokens * b.n_embd,)).reshape(b.n_tokens, b.n_embd).copy())
    _, st = eng.prefill_page(load_page(page), prompt="Free OCR.")
    assert st.image_tokens == 483
    e = np.concatenate(rows)
    marker = (e == t["v.image_newline"]).all(1) | (e == t["v.view_seperator"]).all(1)
    assert (e == t["v.view_seperator"]).all(1).sum() == 1
    assert int((~marker).sum()) == int(456 * ratio) == 56
    assert st.image_tokens_merged == len(e)
    eng.close()


def test_image_cells_survive_a_state_load_with_1d_rope(ds_pair, page):
    """DeepSeek-OCR uses 1-D RoPE, whose KV cells stock llama.cpp saves without their ext
    (the image flag). patches/0005 saves it for every model: after a sequence state round
    trip, fixation still finds the image cells and decodes exactly as before the round trip."""
    import ctypes

    from foveate.native import bindings as B
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    llama = B.llama
    model, mmproj = ds_pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=2, fixation=0.05, fixation_k_min=4)
    try:
        def decode(n_past, steps=3):
            out = []
            for _ in range(steps):
                out.append(eng.logits().copy())
                eng._decode_one(int(out[-1].argmax()), n_past)
                n_past += 1
            return out

        n_past, _ = eng.prefill_page(load_page(page), "Free OCR.")
        size = llama.llama_state_seq_get_size(eng._ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        assert llama.llama_state_seq_get_data(eng._ctx, buf, size, 0) == size
        first = eng.logits().copy()
        before = decode(n_past)
        # ceil(0.05 x 256): the 16 image newlines and the view separator are text to fixation
        assert len(eng.fixation_selection()) == 13

        llama.llama_memory_clear(llama.llama_get_memory(eng._ctx), True)
        eng.set_fixation(0.05, 4)  # forget the run above (no warm start from it)
        assert llama.llama_state_seq_set_data(eng._ctx, buf, size, 0) == size
        assert eng.fixation_selection() == []
        # the restored logits of the last prompt token are not in the state: start from the
        # same first token, then compare the fixation steps
        eng._decode_one(int(first.argmax()), n_past)
        after = [first] + decode(n_past + 1, steps=2)
        assert len(eng.fixation_selection()) == 13, "image cells lost in the state round trip"
        for a, b in zip(before[1:], after[1:]):
            assert np.array_equal(a, b)
    finally:
        eng.close()


def test_trace_is_refused_clearly_on_deepseek_ocr(ds_pair, page):
    """DeepSeek-OCR's image tokens (global view with newline rows, tiles) are not one grid of
    merged patches: the trace says it cannot map them instead of drawing wrong cells."""
    from foveate import Reader
    from foveate.engine.trace import TraceUnavailable

    model, mmproj = ds_pair
    with Reader(model, mmproj, n_ctx=2048, threads=1, fixation=0.05) as r:
        with pytest.raises(TraceUnavailable, match="cannot map .*image tokens to the page yet"):
            r.read(page, prompt="Free OCR.", max_tokens=4, trace=True)
        assert r.read(page, prompt="Free OCR.", max_tokens=4).stats.tokens_generated >= 1
