"""PaddleOCR-VL-shaped random GGUFs (instruments/shapes/paddleocr.py): the real model's tensor
list and parameter counts at full size (no data written), deterministic files, and a cut pair
(2 layers, 512-token vocab; ~180 MB) that llama.cpp / mtmd load and read a page with."""
from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from foveate.instruments.shapes import family_module, paddleocr as P
from shape_checks import sha256

SHAPE = "paddleocr-vl"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return P.write_pair(tmp_path_factory.mktemp("paddleocr"), SHAPE, layers=2, vocab=512)


def test_shape_is_discovered():
    assert family_module(SHAPE) is P


def test_full_size_matches_the_real_model():
    text = {n: (s, t) for n, s, t, _ in P.text_tensors(SHAPE)}
    proj = {n: (s, t) for n, s, t, _ in P.mmproj_tensors(SHAPE)}
    # 18 ERNIE layers x 9 (2 norms, q/k/v/o, gate/up/down; no biases) + embd, norm, lm_head
    assert len(text) == 18 * 9 + 3
    # patch w + b, positions, 27 SigLIP layers x 16, post_ln w + b, mlp_AR norm / 2 linears
    assert len(proj) == 3 + 27 * 16 + 2 + 6
    assert text["token_embd.weight"] == text["output.weight"] == ((103424, 1024), np.float16)
    assert text["blk.17.attn_q.weight"][0] == (16 * 128, 1024)         # head_dim 128, not 64
    assert text["blk.17.attn_k.weight"][0] == text["blk.17.attn_v.weight"][0] == (2 * 128, 1024)
    assert text["blk.17.attn_output.weight"][0] == (1024, 2048)
    assert text["blk.0.ffn_gate.weight"][0] == (3072, 1024)
    assert text["blk.0.ffn_down.weight"][0] == (1024, 3072)
    assert not any(n.endswith(".bias") for n in text)
    assert text["blk.0.attn_norm.weight"][1] == np.float32
    assert proj["v.patch_embd.weight"] == ((1152, 3, 14, 14), np.float16)
    assert proj["v.patch_embd.bias"] == ((1152,), np.float32)
    assert proj["v.position_embd.weight"] == ((27 * 27, 1152), np.float32)
    assert "v.patch_embd.weight.1" not in proj                         # one Conv2d, not Conv3d
    assert proj["v.blk.26.attn_q.weight"] == ((1152, 1152), np.float16)
    assert proj["v.blk.26.attn_q.bias"] == ((1152,), np.float32)
    assert proj["v.blk.26.ffn_up.weight"][0] == (4304, 1152)
    assert proj["v.blk.26.ln2.bias"][0] == (1152,)
    assert proj["mm.input_norm.weight"][0] == proj["mm.input_norm.bias"][0] == (1152,)
    assert proj["mm.1.weight"][0] == (4608, 4608) and proj["mm.2.weight"][0] == (1024, 4608)

    sizes = P.sizes(SHAPE)
    # ERNIE-4.5-0.3B (untied here): 2 x 103424 x 1024 + 18 x 14.16M + norms
    layer = 1024 * 2048 * 2 + 2 * 256 * 1024 + 3 * 3072 * 1024 + 2 * 1024
    assert sizes["text"]["params"] == 2 * 103424 * 1024 + 18 * layer + 1024 == 466_654_208
    # SigLIP-so400m/14 minus its pooling head, + the 2x2 mlp_AR projector
    vit = 27 * (4 * (1152 * 1152 + 1152) + 2 * 4304 * 1152 + 4304 + 1152 + 4 * 1152)
    emb = 1152 * 3 * 14 * 14 + 1152 + 729 * 1152
    mlp_ar = 2 * 1152 + 4608 * 4608 + 4608 + 1024 * 4608 + 1024
    assert sizes["mmproj"]["params"] == vit + emb + 2 * 1152 + mlp_ar == 438_947_440
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    assert 0.88e9 < total < 0.92e9                                      # "PaddleOCR-VL-0.9B"
    assert abs(sizes["text"]["bytes"] - 2 * sizes["text"]["params"]) < 0.01 * sizes["text"]["bytes"]


def test_generator_is_deterministic(tmp_path):
    a = P.write_pair(tmp_path / "a", SHAPE, layers=1, seed=3, vocab=512)
    b = P.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=512)
    assert [p.name for p in a] == ["paddleocr-vl-f16.gguf", "paddleocr-vl-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0]) and sha256(a[1]) == sha256(b[1])
    c = P.write_pair(tmp_path / "c", SHAPE, layers=1, seed=4, vocab=512)
    assert sha256(c[0]) != sha256(a[0]) and sha256(c[1]) != sha256(a[1])


def test_vocab_keeps_the_real_special_ids():
    tokens, types = P.vocab_tokens(SHAPE)
    assert len(tokens) == 103424
    for tok, i in P.SPECIAL_IDS.items():
        assert tokens[i] == tok and types[i] == (2 if tok == "<unk>" else 3)
    small, _ = P.vocab_tokens(SHAPE, 512)
    assert len(small) == 512 and small[:3] == ["<unk>", "<s>", "</s>"]
    assert {"<|IMAGE_START|>", "<|IMAGE_END|>", "<|begin_of_sentence|>"} <= set(small)


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "paddleocr"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 2 and kv(f"{a}.embedding_length") == 1024
    assert kv(f"{a}.feed_forward_length") == 3072 and kv(f"{a}.context_length") == 131072
    assert kv(f"{a}.attention.head_count") == 16 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 128
    assert kv(f"{a}.rope.dimension_sections") == [16, 24, 24, 0]
    assert kv(f"{a}.rope.freq_base") == 500000.0
    assert f"{a}.rope.dimension_count" not in r.fields                  # n_rot = head_dim
    toks = kv("tokenizer.ggml.tokens")
    assert kv("tokenizer.ggml.model") == "llama"
    assert toks[kv("tokenizer.ggml.eos_token_id")] == "</s>"
    assert toks[kv("tokenizer.ggml.bos_token_id")] == "<s>" and not kv("tokenizer.ggml.add_bos_token")
    assert kv("tokenizer.chat_template") == P.CHAT_TEMPLATE
    want = {n: (s, d) for n, s, d, _ in P.text_tensors(SHAPE, 2, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "paddleocr"
    assert kv("clip.vision.projection_dim") == 1024 and kv("clip.vision.embedding_length") == 1152
    assert kv("clip.vision.block_count") == 2 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.feed_forward_length") == 4304
    assert kv("clip.vision.image_size") == 1001                          # int(sqrt(max_pixels))
    assert kv("clip.vision.image_min_pixels") == 112896
    assert kv("clip.vision.image_max_pixels") == 1003520
    assert kv("clip.use_gelu") is True
    want = {n: (s, d) for n, s, d, _ in P.mmproj_tensors(SHAPE, 2)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    sizes = P.sizes(SHAPE, 2, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def _expected_grid(width: int, height: int) -> tuple[int, int]:
    """PaddleOCR-VL's smart_resize (HF PaddleOCRVLImageProcessor, preprocessor_config.json):
    sides rounded to multiples of patch 14 x merge 2 = 28 px; below min_pixels 112896 both
    sides scale up by sqrt(min_pixels / area), ceil to 28; one token per 28 x 28 px."""
    f, lo, hi = 28, 112896, 1003520
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    assert h * w <= hi
    if h * w < lo:
        beta = math.sqrt(lo / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return w // f, h // f


def test_pair_reads_a_page(pair, page):
    from PIL import Image

    from foveate import Reader
    from foveate.native import bindings as B

    width, height = Image.open(page).size                     # 448 x 224 -> 476 x 252
    nx, ny = _expected_grid(width, height)
    assert (nx, ny) == (17, 9)
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        eng = r.engine
        # llama.cpp's heuristic knows no PaddleOCR-VL template: the call fails, and foveate
        # renders the GGUF's jinja template (it reads lists of parts), mtmd's marker in place
        # of the template's image tokens
        msg = B.llama.llama_chat_message(role=b"user", content=b"x")
        buf = ctypes.create_string_buffer(256)
        assert B.llama.llama_chat_apply_template(eng._template, (B.llama.llama_chat_message * 1)(msg),
                                                 1, True, buf, len(buf)) < 0
        assert eng.format_prompt("OCR:") == "<|begin_of_sentence|>User: <__media__>OCR:\nAssistant:\n"
        res = r.read(page, prompt="OCR:", max_tokens=4)
        st = res.stats
        assert st.image_tokens == nx * ny == 153
        assert eng._last_grid == (nx, ny, 1)
        # the markers are text tokens around the chunk (<|IMAGE_START|>, <|IMAGE_END|>), the
        # rest is the turn's text
        def n_tok(t):
            out = (B.llama.llama_token * 64)()
            return B.llama.llama_tokenize(eng._vocab, t, len(t), out, 64, False, True)
        n_text = n_tok(b"<|begin_of_sentence|>User: ") + n_tok(b"OCR:\nAssistant:\n")
        assert st.prompt_tokens == st.image_tokens + 2 + n_text
        assert st.stop_reason in ("max_tokens", "eos")
        assert st.tokens_generated == 4 or st.stop_reason == "eos"


def _tokens(eng, text: str) -> list[int]:
    from foveate.native import bindings as B

    raw = text.encode()
    out = (B.llama.llama_token * 64)()
    n = B.llama.llama_tokenize(eng._vocab, raw, len(raw), out, 64, False, True)
    return list(out[:n])


def test_image_rows_are_patches_with_mrope_positions(pair, page):
    """The image chunk is only merged patches (no marker rows), decoded with M-RoPE
    positions (t, y, x, 0) on the 17 x 9 grid."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=4096, threads=1)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(
            (b.n_tokens, b.n_pos,
             np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).copy()))
        _, st = eng.prefill_page(load_page(page), prompt="OCR:")
        assert sum(n for n, _, _ in seen) == st.image_tokens == 153
        assert all(k == 4 for _, k, _ in seen)
        pos = np.concatenate([p.reshape(k, n).T for n, k, p in seen])   # (tokens, 4)
        t0 = pos[0, 0]
        assert (pos[:, 0] == t0).all()                                  # one temporal position
        assert (pos[:, 1] - t0).tolist() == [i // 17 for i in range(153)]   # rows
        assert (pos[:, 2] - t0).tolist() == [i % 17 for i in range(153)]    # columns
        assert len(_tokens(eng, "<|IMAGE_START|><|IMAGE_END|>")) == 2   # single control tokens
    finally:
        eng.close()


@pytest.mark.parametrize("opts", [{"merge": 0.5}, {"fixation": 0.05},
                                  {"merge": 0.5, "fixation": 0.05}])
def test_pair_reads_with_merging_and_fixation(pair, page, opts):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1, **opts) as r:
        st = r.read(page, prompt="OCR:", max_tokens=4).stats
    assert st.image_tokens == 153 and st.stop_reason in ("max_tokens", "eos")
    if "merge" in opts:
        assert st.image_tokens_merged == 76                             # floor(153 x 0.5)
    if "fixation" in opts:
        assert 0 < st.visual_tokens_selected < st.image_tokens
