"""Qwen3-VL-shaped random GGUFs (instruments/shapes/qwen3vl.py): the real models' tensor list
and parameter counts at full size (no data written), deterministic files, and a cut pair
(4 text / 3 ViT layers, the fewest that keep all three deepstack mergers and that llama.cpp's
qwen3vl graph accepts; 512-token vocab; ~700 MB) that llama.cpp / mtmd load and read with."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module, qwen3vl as Q
from shape_checks import sha256

SHAPE = "qwen3-vl-2b"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return Q.write_pair(tmp_path_factory.mktemp("qwen3vl"), SHAPE, layers=1, vocab=512)


def test_shapes_are_discovered():
    assert family_module("qwen3-vl-2b") is Q and family_module("qwen3-vl-4b") is Q


@pytest.mark.parametrize("shape,n_layer,d,q,ff,params", [
    ("qwen3-vl-2b", 28, 2048, 2048, 6144, 2_127_532_032),
    ("qwen3-vl-4b", 36, 2560, 4096, 9728, 4_437_815_808)])
def test_full_size_matches_the_real_model(shape, n_layer, d, q, ff, params):
    text = {n: (s, t) for n, s, t, _ in Q.text_tensors(shape)}
    proj = {n: (s, t) for n, s, t, _ in Q.mmproj_tensors(shape)}
    # per layer: attn norm, q, k, v, o, q/k norms, ffn norm, gate, up, down; embd + norm (tied)
    assert len(text) == n_layer * 11 + 2 and "output.weight" not in text
    # 4 embedding tensors, 24 x 12 ViT, 3 deepstack mergers x 6, post_ln 2, merger 4
    assert len(proj) == 4 + 24 * 12 + 3 * 6 + 2 + 4
    assert text["token_embd.weight"] == ((151936, d), np.float16)
    last = f"blk.{n_layer - 1}."
    assert text[last + "attn_q.weight"][0] == (q, d)
    assert text[last + "attn_k.weight"][0] == text[last + "attn_v.weight"][0] == (1024, d)
    assert text[last + "attn_output.weight"][0] == (d, q)
    assert text[last + "attn_q_norm.weight"] == text[last + "attn_k_norm.weight"] == ((128,), np.float32)
    assert not any(n.endswith(".bias") for n in text)
    assert text["blk.0.ffn_up.weight"][0] == (ff, d)
    assert proj["v.patch_embd.weight"] == proj["v.patch_embd.weight.1"] == ((1024, 3, 16, 16), np.float16)
    assert proj["v.patch_embd.bias"] == ((1024,), np.float32)
    assert proj["v.position_embd.weight"] == ((2304, 1024), np.float32)
    assert proj["v.blk.23.attn_qkv.weight"] == ((3072, 1024), np.float16)
    assert proj["v.blk.23.ffn_up.weight"][0] == (4096, 1024)
    assert sorted({int(n.split(".")[2]) for n in proj if n.startswith("v.deepstack.")}) == [5, 11, 17]
    assert proj["v.deepstack.5.norm.weight"][0] == (4096,)          # after the 2x2 shuffle
    assert proj["v.deepstack.17.fc2.weight"] == ((d, 4096), np.float16)
    assert proj["v.post_ln.weight"][0] == (1024,)                   # before it
    assert proj["mm.0.weight"][0] == (4096, 4096) and proj["mm.2.weight"][0] == (d, 4096)

    sizes = Q.sizes(shape)
    assert sizes["text"]["params"] + sizes["mmproj"]["params"] == params  # "2B" / "4B"
    # the vision tower (without the merger / deepstack mergers) is the same in both
    vit = sum(int(np.prod(s)) for n, (s, _) in proj.items() if not n.startswith(("mm.", "v.deep")))
    assert vit == 1024 * 3 * 16 * 16 * 2 + 1024 + 2304 * 1024 + 24 * 12_596_224 + 2 * 1024


def test_cut_stacks_keep_the_deepstack_width():
    assert Q.deepstack_layers(SHAPE) == (5, 11, 17)
    assert Q.deepstack_layers(SHAPE, 1) == (0, 1, 2)
    assert Q.deepstack_layers(SHAPE, 12) == (2, 5, 8)
    for layers in (1, 2, 4, 12):
        names = [n for n, *_ in Q.mmproj_tensors(SHAPE, layers)]
        assert sum(n.endswith("attn_qkv.weight") for n in names) == max(layers, 3)
        assert sum(n.endswith("fc2.weight") for n in names) == 3
        n_text = sum(n.endswith("attn_q.weight") for n, *_ in Q.text_tensors(SHAPE, layers))
        assert n_text == max(layers, 4)


def test_generator_is_deterministic(pair, tmp_path):
    b = Q.write_pair(tmp_path / "b", SHAPE, layers=1, seed=0, vocab=512)   # as `pair`
    assert [p.name for p in b] == ["qwen3-vl-2b-f16.gguf", "qwen3-vl-2b-mmproj-f16.gguf"]
    assert sha256(pair[0]) == sha256(b[0]) and sha256(pair[1]) == sha256(b[1])
    for p in b:
        p.unlink()
    # another seed, other weights (the mmproj alone: the same writer, 290 of the 700 MB)
    from foveate.instruments.shapes.gguf_specs import write_gguf

    c = write_gguf(tmp_path / "c.gguf", "clip", Q.mmproj_tensors(SHAPE, 1),
                   Q._mmproj_kv(SHAPE, 1), seed=4)
    assert sha256(c) != sha256(pair[1])
    c.unlink()


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
    a = "qwen3vl"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 4 and kv(f"{a}.embedding_length") == 2048
    assert kv(f"{a}.n_deepstack_layers") == 3
    assert kv(f"{a}.rope.dimension_sections") == [24, 20, 20, 0]
    assert kv(f"{a}.rope.freq_base") == 5e6
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 128
    toks = kv("tokenizer.ggml.tokens")
    assert toks[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    want = {n: (s, d) for n, s, d, _ in Q.text_tensors(SHAPE, 1, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("clip.projector_type") == "qwen3vl_merger"
    assert kv("clip.vision.projection_dim") == 2048 and kv("clip.vision.block_count") == 3
    assert kv("clip.vision.is_deepstack_layers") == [True, True, True]
    assert kv("clip.vision.spatial_merge_size") == 2 and kv("clip.use_gelu") is True
    assert kv("clip.vision.image_size") == 768
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
    """Qwen3-VL's smart_resize (HF Qwen2VLImageProcessor with Qwen3-VL's preprocessor
    config): sides rounded to multiples of patch 16 x merge 2 = 32 px, within
    size.shortest_edge 65536 .. longest_edge 16777216 px (no rescale for this page); one
    token per 32 x 32 px."""
    f = 32
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    assert 65536 <= h * w <= 16777216
    return (h // f) * (w // f)


def test_pair_reads_a_page(pair, page):
    from PIL import Image

    from foveate import Reader

    width, height = Image.open(page).size                     # 448 x 224
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        st = r.read(page, prompt="Read the page.", max_tokens=4).stats
        assert st.image_tokens == _expected_image_tokens(width, height) == 14 * 7
        assert st.stop_reason in ("max_tokens", "eos")
        assert st.tokens_generated == 4 or st.stop_reason == "eos"
        # mtmd's image markers are single control tokens of the text vocab, around the chunk
        toks = _tokenize(r.engine, "<|vision_start|>x<|vision_end|>")
        assert len(toks) == 3 and toks[0] != toks[2]
    # and with token merging and fixation on together
    with Reader(model, mmproj, n_ctx=4096, threads=1, merge=0.5, fixation=0.05) as r:
        st = r.read(page, prompt="Read the page.", max_tokens=4).stats
        assert st.image_tokens == 98 and st.image_tokens_merged == 49
        assert 0 < st.visual_tokens_selected < st.image_tokens_merged
        assert st.stop_reason in ("max_tokens", "eos")
