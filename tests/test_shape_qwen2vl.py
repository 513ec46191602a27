"""Qwen2-VL-shaped random GGUFs (instruments/shapes/qwen2vl.py): the real models' tensor list
and parameter counts at full size (no data written), deterministic files, and a cut pair
(1 layer, 512-token vocab; ~200 MB) that llama.cpp / mtmd load and read a page with."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module, qwen2vl as Q
from shape_checks import sha256

SHAPE = "qwen2-vl-2b"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return Q.write_pair(tmp_path_factory.mktemp("qwen2vl"), SHAPE, layers=1, vocab=512)


def test_shapes_are_discovered():
    assert family_module("qwen2-vl-2b") is Q and family_module("qwen2-vl-7b") is Q


@pytest.mark.parametrize("shape,tied,d,kv,ff,vocab", [
    ("qwen2-vl-2b", True, 1536, 256, 8960, 151936),
    ("qwen2-vl-7b", False, 3584, 512, 18944, 152064)])
def test_full_size_matches_the_real_model(shape, tied, d, kv, ff, vocab):
    text = {n: (s, t) for n, s, t, _ in Q.text_tensors(shape)}
    proj = {n: (s, t) for n, s, t, _ in Q.mmproj_tensors(shape)}
    # 28 layers x 12 (q/k/v weight + bias, o, 2 norms, 3 FFN) + embd + norm (+ lm_head)
    assert len(text) == 28 * 12 + 2 + (not tied)
    # 32 ViT blocks x 16, 2 patch kernels, post_ln w + b, merger mm.0 / mm.2 w + b
    assert len(proj) == 32 * 16 + 2 + 2 + 4
    assert text["token_embd.weight"] == ((vocab, d), np.float16)
    assert ("output.weight" in text) == (not tied)
    assert text["blk.27.attn_q.weight"][0] == (d, d)
    assert text["blk.27.attn_k.weight"][0] == text["blk.27.attn_v.weight"][0] == (kv, d)
    assert text["blk.0.attn_q.bias"] == ((d,), np.float32) and "blk.0.attn_output.bias" not in text
    assert text["blk.0.ffn_gate.weight"][0] == (ff, d) and text["blk.0.ffn_down.weight"][0] == (d, ff)
    assert text["blk.0.attn_norm.weight"][1] == np.float32
    assert proj["v.patch_embd.weight"] == proj["v.patch_embd.weight.1"] == ((1280, 3, 14, 14), np.float16)
    assert "v.patch_embd.bias" not in proj and "v.position_embd.weight" not in proj
    assert proj["v.blk.31.attn_q.weight"] == ((1280, 1280), np.float16)
    assert proj["v.blk.31.ln1.bias"] == ((1280,), np.float32)            # LayerNorm, with bias
    assert proj["v.blk.31.ffn_up.weight"][0] == (5120, 1280)
    assert proj["v.blk.31.ffn_down.weight"][0] == (1280, 5120)
    assert proj["v.post_ln.weight"][0] == (1280,)
    assert proj["mm.0.weight"][0] == (5120, 5120) and proj["mm.2.weight"][0] == (d, 5120)

    sizes = Q.sizes(shape)
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    # published: 2B: model.safetensors.index.json total_size 4,417,971,200 B of bf16 / 2;
    # 7B: 8,291,375,616 parameters
    assert total == {"qwen2-vl-2b": 2_208_985_600, "qwen2-vl-7b": 8_291_375_616}[shape]
    assert sizes["mmproj"]["params"] == 665_271_296 - 5120 * 1536 - 1536 + 5120 * d + d
    assert abs(sizes["text"]["bytes"] - 2 * sizes["text"]["params"]) < 0.01 * sizes["text"]["bytes"]


def test_generator_is_deterministic(tmp_path):
    a = Q.write_pair(tmp_path / "a", SHAPE, layers=1, seed=3, vocab=512)
    b = Q.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=512)
    assert [p.name for p in a] == ["qwen2-vl-2b-f16.gguf", "qwen2-vl-2b-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0]) and sha256(a[1]) == sha256(b[1])
    c = Q.write_pair(tmp_path / "c", SHAPE, layers=1, seed=4, vocab=512)
    assert sha256(c[0]) != sha256(a[0]) and sha256(c[1]) != sha256(a[1])


def test_vocab_keeps_the_real_special_ids():
    tokens, types = Q.vocab_tokens(SHAPE)
    assert len(tokens) == 151936
    for tok, i in Q.SPECIAL_IDS.items():
        assert tokens[i] == tok and types[i] == 3            # control
    small, _ = Q.vocab_tokens(SHAPE, 512)
    assert len(small) == 512 and set(Q.SPECIAL_IDS) <= set(small)


def _apply_template(template: str, messages) -> str:
    """llama.cpp's llama_chat_apply_template with the GGUF's template string (what
    foveate's Engine.format_prompt calls): llama.cpp picks a built-in format from it."""
    import ctypes

    from foveate.native import bindings as B

    llama = B.llama
    arr = (llama.llama_chat_message * len(messages))(
        *[llama.llama_chat_message(role=r.encode(), content=c.encode()) for r, c in messages])
    buf = ctypes.create_string_buffer(4096)
    n = llama.llama_chat_apply_template(template.encode(), arr, len(messages), True, buf, len(buf))
    assert 0 < n < len(buf)
    return buf.raw[:n].decode()


def test_template_is_detected_as_chatml():
    got = _apply_template(Q.CHAT_TEMPLATE, [("system", "S"), ("user", "<__media__>\nRead.")])
    assert got == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<__media__>\nRead."
                   "<|im_end|>\n<|im_start|>assistant\n")


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "qwen2vl"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 1 and kv(f"{a}.embedding_length") == 1536
    assert kv(f"{a}.feed_forward_length") == 8960
    assert kv(f"{a}.attention.head_count") == 12 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.rope.dimension_sections") == [16, 24, 24, 0]
    assert kv(f"{a}.rope.freq_base") == 1e6 and kv(f"{a}.context_length") == 32768
    toks = kv("tokenizer.ggml.tokens")
    assert toks[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert kv("tokenizer.chat_template") == Q.CHAT_TEMPLATE
    want = {n: (s, d) for n, s, d, _ in Q.text_tensors(SHAPE, 1, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "qwen2vl_merger"
    assert kv("clip.vision.projection_dim") == 1536 and kv("clip.vision.embedding_length") == 1280
    assert kv("clip.vision.block_count") == 1 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.feed_forward_length") == 1536      # the converter's quirk
    assert "clip.use_gelu" not in r.fields and "clip.use_silu" not in r.fields  # QuickGELU
    want = {n: (s, d) for n, s, d, _ in Q.mmproj_tensors(SHAPE, 1)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    sizes = Q.sizes(SHAPE, 1, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def _tokenize(engine, text: str) -> list[int]:

    from foveate.native import bindings as B

    raw = text.encode()
    out = (B.llama.llama_token * 64)()
    n = B.llama.llama_tokenize(engine._vocab, raw, len(raw), out, 64, False, True)
    assert n > 0
    return list(out[:n])


def _expected_image_tokens(width: int, height: int) -> int:
    """Qwen2-VL's smart_resize (HF Qwen2VLImageProcessor): sides rounded to multiples of
    patch 14 x merge 2 = 28 px, within min_pixels 56 * 56 .. max_pixels 28 * 28 * 1280 (no
    rescale for a small page); one token per 28 x 28 px."""
    f = 28
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    assert 56 * 56 <= h * w <= 28 * 28 * 1280
    return (h // f) * (w // f)


def test_pair_reads_a_page(pair, page):
    from PIL import Image

    from foveate import Reader

    width, height = Image.open(page).size                     # 448 x 224
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        res = r.read(page, prompt="Read the page.", max_tokens=4)
        st = res.stats
        assert st.image_tokens == _expected_image_tokens(width, height) == 16 * 8
        assert st.stop_reason in ("max_tokens", "eos")
        assert st.tokens_generated == 4 or st.stop_reason == "eos"
        # mtmd's image markers are single control tokens of the text vocab, around the chunk
        toks = _tokenize(r.engine, "<|vision_start|>x<|vision_end|>")
        assert len(toks) == 3 and toks[0] != toks[2]


@pytest.mark.parametrize("opts", [{"merge": 0.5}, {"fixation": 0.05},
                                  {"merge": 0.5, "fixation": 0.05}])
def test_pair_reads_with_merging_and_fixation(pair, page, opts):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1, **opts) as r:
        st = r.read(page, prompt="Read the page.", max_tokens=4).stats
    assert st.image_tokens == 128 and st.stop_reason in ("max_tokens", "eos")
    if "merge" in opts:
        assert st.image_tokens_merged == 64
    if "fixation" in opts:
        assert 0 < st.visual_tokens_selected < st.image_tokens
