"""HunyuanOCR-shaped random GGUFs (instruments/shapes/hunyuanvl.py): the real model's tensor
list and parameter counts at full size (no data written), deterministic files, and a cut pair
(2 text / 2 ViT layers, 512-token vocab; ~260 MB) that llama.cpp / mtmd load and read a page
with (XD-RoPE positions, BOI / newline / EOI rows)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from foveate.instruments.shapes import family_module, hunyuanvl as H
from shape_checks import sha256

SHAPE = "hunyuan-ocr"
PROMPT = "Free OCR."


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return H.write_pair(tmp_path_factory.mktemp("hunyuanvl"), SHAPE, layers=2, vocab=512)


def _hunyuan_grid(width: int, height: int) -> tuple[int, int]:
    """HunyuanOCR's processor, restated: sides rounded to multiples of 32 (patch 16 x merge 2),
    scaled up to at least 512^2 pixels (ceil) or down to at most 2048^2 (floor), aspect kept;
    returns the merged grid (w, h) = (W / 32, H / 32)."""
    w, h = round(width / 32) * 32, round(height / 32) * 32
    if w * h < 512 * 512:
        beta = math.sqrt(512 * 512 / (width * height))
        w, h = math.ceil(width * beta / 32) * 32, math.ceil(height * beta / 32) * 32
    elif w * h > 2048 * 2048:
        beta = math.sqrt(width * height / (2048 * 2048))
        w, h = math.floor(width / beta / 32) * 32, math.floor(height / beta / 32) * 32
    return w // 32, h // 32


def test_shape_is_discovered():
    assert family_module(SHAPE) is H


def test_full_size_matches_the_real_model():
    text = {n: (s, t) for n, s, t, _ in H.text_tensors(SHAPE)}
    proj = {n: (s, t) for n, s, t, _ in H.mmproj_tensors(SHAPE)}
    # 24 layers x 11 (2 norms, q/k/v/o, q/k norms, 3 FFN) + embd + output norm; tied lm_head
    assert len(text) == 24 * 11 + 2 == 266
    assert "output.weight" not in text
    assert text["token_embd.weight"] == ((120818, 1024), np.float16)
    assert text["blk.23.attn_q.weight"][0] == (2048, 1024)             # 16 heads x 128
    assert text["blk.23.attn_k.weight"][0] == text["blk.23.attn_v.weight"][0] == (1024, 1024)
    assert text["blk.23.attn_output.weight"][0] == (1024, 2048)
    assert text["blk.23.attn_q_norm.weight"] == ((128,), np.float32)
    assert text["blk.23.ffn_gate.weight"][0] == (3584, 1024)
    assert "blk.0.attn_q.bias" not in text
    # patch w + b, position table, 27 blocks x 16, merger 8, 4 learned rows
    assert len(proj) == 3 + 27 * 16 + 8 + 4 == 447
    assert proj["v.patch_embd.weight"] == ((1152, 3, 16, 16), np.float16)
    assert proj["v.position_embd.weight"] == ((16384, 1152), np.float32)  # CLS row stripped
    assert proj["v.blk.26.attn_out.bias"] == ((1152,), np.float32)
    assert proj["v.blk.26.ln2.bias"] == ((1152,), np.float32)            # LayerNorm
    assert proj["v.blk.26.ffn_up.weight"][0] == (4304, 1152)
    assert "v.blk.0.ffn_gate.weight" not in proj and "v.post_ln.weight" not in proj
    assert proj["mm.0.weight"] == ((2304, 1152, 2, 2), np.float16)
    assert proj["mm.2.weight"] == ((4608, 2304, 1, 1), np.float16)
    assert proj["mm.model.fc.weight"] == ((1024, 4608), np.float16)
    assert proj["v.image_newline"] == ((4608,), np.float32)       # before the projection
    assert proj["mm.image_begin"] == proj["mm.image_end"] == ((1024,), np.float32)
    assert proj["v.view_seperator"] == ((1024,), np.float32)      # image_sep, unused

    sizes = H.sizes(SHAPE)
    assert sizes["text"]["params"] == 539_010_048
    assert sizes["mmproj"]["params"] == 457_196_912
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    assert 0.95e9 < total < 1.05e9                                 # published: 1 B
    assert 1.0e9 < sizes["text"]["bytes"] < 1.1e9
    assert 0.9e9 < sizes["mmproj"]["bytes"] < 1.0e9
    # the special tokens at their real ids in the full vocab
    toks, _ = H.make_vocab(SHAPE)
    assert len(toks) == 120818
    assert (toks[120000], toks[120020], toks[120118], toks[120119]) == (
        H.BOS, H.EOS, H.IMG_START, H.IMG_END)


def test_generator_is_deterministic(tmp_path):
    a = H.write_pair(tmp_path / "a", SHAPE, layers=1, seed=3, vocab=512)
    b = H.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=512)
    assert [p.name for p in a] == [f"{SHAPE}-f16.gguf", f"{SHAPE}-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0]) and sha256(a[1]) == sha256(b[1])
    c = H.write_pair(tmp_path / "c", SHAPE, layers=1, seed=4, vocab=512)
    assert sha256(c[0]) != sha256(a[0]) and sha256(c[1]) != sha256(a[1])


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "hunyuan_vl"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 2 and kv(f"{a}.embedding_length") == 1024
    assert kv(f"{a}.attention.head_count") == 16 and kv(f"{a}.attention.head_count_kv") == 8
    assert kv(f"{a}.attention.key_length") == 128
    assert kv(f"{a}.rope.dimension_sections") == [16, 16, 16, 16]
    assert kv(f"{a}.rope.freq_base") == 10000.0 and kv(f"{a}.rope.scaling.alpha") == 1000.0
    toks = kv("tokenizer.ggml.tokens")
    assert len(toks) == 512 and toks[kv("tokenizer.ggml.eos_token_id")] == H.EOS
    assert kv("tokenizer.chat_template") == H.CHAT_TEMPLATE
    want = {n: (s, d) for n, s, d, _ in H.text_tensors(SHAPE, 2, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("clip.projector_type") == "hunyuanvl"
    assert kv("clip.vision.block_count") == 2 and kv("clip.vision.embedding_length") == 1152
    assert kv("clip.vision.image_size") == 2048 and kv("clip.vision.spatial_merge_size") == 2
    assert kv("clip.vision.image_min_pixels") == 512 * 512
    assert kv("clip.vision.image_max_pixels") == 2048 * 2048
    want = {n: (s, d) for n, s, d, _ in H.mmproj_tensors(SHAPE, 2)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    sizes = H.sizes(SHAPE, 2, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_template_is_llama_cpps_hunyuan_vl(pair):
    """The reconstructed jinja template is detected as llama.cpp's "hunyuan-vl" format."""
    import ctypes

    from foveate.native import bindings as B

    llama = B.llama
    content = b"<__media__>\nFree OCR."
    out = []
    for tmpl in (H.CHAT_TEMPLATE.encode(), b"hunyuan-vl"):
        arr = (llama.llama_chat_message * 1)(llama.llama_chat_message(role=b"user",
                                                                      content=content))
        buf = ctypes.create_string_buffer(4096)
        n = llama.llama_chat_apply_template(tmpl, arr, 1, True, buf, len(buf))
        assert n > 0
        out.append(buf.raw[:n].decode())
    assert out[0] == out[1] == H.BOS + content.decode() + H.USER


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        st = r.read(page, prompt=PROMPT, max_tokens=4).stats
    w, h = _hunyuan_grid(448, 224)                    # 736 x 384 px: 23 x 12 merged tokens
    assert (w, h) == (23, 12)
    assert st.image_tokens == 1 + h * (w + 1) + 1 == H.image_tokens(448, 224) == 290
    # BOS, image start, the image, image end, "\n" + 9 characters, <｜hy_User｜>
    assert st.prompt_tokens == 290 + 1 + 2 + 10 + 1
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"


def test_positions_are_xd_rope(pair, page):
    """mtmd's HUNYUANVL positions: 4 streams; BOI / EOI sequential in all four; content and
    newline rows at (sequential, column, row, image index); merging keeps them."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=4096, threads=1)
    seen = []
    eng.image_batch_hook = lambda b: seen.append(
        (b.n_pos, np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).reshape(b.n_pos, -1).copy()))
    try:
        eng.prefill_page(load_page(page), prompt=PROMPT)
        assert all(n == 4 for n, _ in seen)
        pos = np.concatenate([p for _, p in seen], axis=1)
        assert pos.shape == (4, 290)
        p0 = int(pos[0, 0])                       # after BOS and the image-start token
        assert p0 == 2 and (pos[:, 0] == p0).all() and (pos[:, -1] == p0 + 289).all()
        i = 1 + 5 * 24 + 7                        # row 5, column 7
        assert pos[:, i].tolist() == [p0 + i, 7, 5, 0]
        nl = 1 + 11 * 24 + 23                     # the last row's newline
        assert pos[:, nl].tolist() == [p0 + nl, 23, 11, 0]
        seen.clear()
        eng.set_merge(0.5)
        eng.prefill_page(load_page(page), prompt=PROMPT)
        kept = eng.merge_kept()
        merged = np.concatenate([p for _, p in seen], axis=1)
        # BOI, EOI and the 12 row newlines are markers (by layout), never merged: the keep
        # ratio applies to the 276 content rows (the newline of a fully merged row would go)
        markers = {0, 289} | {1 + r * 24 + 23 for r in range(12)}
        assert markers <= set(kept)
        assert len(kept) == merged.shape[1] == 276 // 2 + len(markers) == 152
        assert np.array_equal(merged, pos[:, kept])
    finally:
        eng.close()
