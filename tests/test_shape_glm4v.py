"""GLM-OCR / GLM-4.1V-shaped random GGUFs (instruments/shapes/glm4v.py): the real models'
tensor lists and parameter counts at full size (no data written), deterministic files, and
a cut GLM-OCR pair (1 layer + the NextN layer, 512-token vocab; ~230 MB) that llama.cpp /
mtmd load and read a page with. GLM-4.1V's cut pair (~900 MB) is read in test_shape_glm4v_9b.py."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module, glm4v as G
from shape_checks import sha256

OCR, V41 = "glm-ocr", "glm-4.1v-9b"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return G.write_pair(tmp_path_factory.mktemp("glmocr"), OCR, layers=1, vocab=512)


def test_shapes_are_discovered():
    assert family_module(OCR) is G and family_module(V41) is G


def test_glm_ocr_full_size_matches_the_checkpoint():
    text = {n: (s, t) for n, s, t, _ in G.text_tensors(OCR)}
    proj = {n: (s, t) for n, s, t, _ in G.mmproj_tensors(OCR)}
    # 16 + 1 NextN layers x 10 (4 norms, q/k/v/o, fused gate_up, down), the NextN layer's 6
    # extra tensors, embd, norm, lm_head
    assert len(text) == 17 * 10 + 6 + 3
    # 2 patch kernels + bias, 24 CogViT blocks x 14, post_ln, downsample w + b, merger 6
    assert len(proj) == 3 + 24 * 14 + 1 + 2 + 6
    # the checkpoint's 526 tensors; the converter splits its Conv3d patch kernel in two
    assert len(text) + len(proj) == 526 + 1
    assert text["token_embd.weight"] == text["output.weight"] == ((59392, 1536), np.float16)
    assert text["blk.15.attn_q.weight"][0] == (16 * 128, 1536)         # head_dim 128, not 96
    assert text["blk.15.attn_k.weight"][0] == text["blk.15.attn_v.weight"][0] == (8 * 128, 1536)
    assert text["blk.15.attn_output.weight"][0] == (1536, 2048)
    assert text["blk.0.ffn_up.weight"][0] == (2 * 4608, 1536) and "blk.0.ffn_gate.weight" not in text
    assert text["blk.0.post_attention_norm.weight"] == ((1536,), np.float32)
    assert text["blk.0.post_ffw_norm.weight"][1] == np.float32
    assert not any(n.endswith(".bias") for n in text)
    assert text["blk.16.nextn.eh_proj.weight"] == ((1536, 3072), np.float16)
    assert text["blk.16.nextn.embed_tokens.weight"][0] == (59392, 1536)
    assert "blk.15.nextn.enorm.weight" not in text
    assert proj["v.patch_embd.weight"] == proj["v.patch_embd.weight.1"] == ((1024, 3, 14, 14), np.float16)
    assert proj["v.patch_embd.bias"] == ((1024,), np.float32)
    assert "v.position_embd.weight" not in proj and "v.norm_embd.weight" not in proj
    assert proj["v.blk.23.attn_qkv.weight"][0] == (3072, 1024) and "v.blk.23.attn_qkv.bias" in proj
    assert proj["v.blk.23.attn_q_norm.weight"] == ((64,), np.float32)    # per head
    assert proj["v.blk.23.ffn_gate.weight"][0] == (4096, 1024) and "v.blk.23.ffn_down.bias" in proj
    assert proj["mm.patch_merger.weight"] == ((1536, 1024, 2, 2), np.float16)
    assert proj["mm.model.fc.weight"][0] == (1536, 1536) and "mm.model.fc.bias" not in proj
    assert proj["mm.gate.weight"][0] == (4608, 1536) and proj["mm.down.weight"][0] == (1536, 4608)

    sizes = G.sizes(OCR)
    # model.safetensors: 1,325,258,240 parameters (text + MTP layer + vision)
    assert sizes["text"]["params"] + sizes["mmproj"]["params"] == 1_325_258_240
    assert abs(sizes["text"]["bytes"] - 2 * sizes["text"]["params"]) < 0.01 * sizes["text"]["bytes"]


def test_glm_4_1v_full_size():
    text = {n: (s, t) for n, s, t, _ in G.text_tensors(V41)}
    proj = {n: (s, t) for n, s, t, _ in G.mmproj_tensors(V41)}
    assert len(text) == 40 * 13 + 3                                    # + q/k/v biases, no NextN
    assert len(proj) == 5 + 24 * 7 + 1 + 2 + 6                         # + norm_embd, positions
    assert text["token_embd.weight"][0] == (151552, 4096)
    assert text["blk.39.attn_k.weight"][0] == (256, 4096) and text["blk.39.attn_k.bias"][0] == (256,)
    assert text["blk.39.ffn_up.weight"][0] == (2 * 13696, 4096)
    assert not any(".nextn." in n for n in text)
    assert proj["v.position_embd.weight"] == ((24 * 24, 1536), np.float32)
    assert proj["v.norm_embd.weight"][0] == (1536,)
    assert proj["v.blk.0.attn_qkv.weight"][0] == (4608, 1536) and "v.blk.0.attn_qkv.bias" not in proj
    assert "v.blk.0.attn_q_norm.weight" not in proj
    assert proj["v.blk.0.ffn_up.weight"][0] == (4096, 1536)           # MLP width out_hidden_size
    assert proj["mm.patch_merger.weight"][0] == (4096, 1536, 2, 2)
    assert proj["mm.up.weight"][0] == (13696, 4096)
    sizes = G.sizes(V41)
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    assert 10.25e9 < total < 10.35e9                                   # hub: "10.3B params"


def test_generator_is_deterministic(tmp_path, pair):
    a = G.write_pair(tmp_path / "a", OCR, layers=1, seed=3, vocab=512)
    b = G.write_pair(tmp_path / "b", OCR, layers=1, seed=3, vocab=512)
    assert [p.name for p in a] == ["glm-ocr-f16.gguf", "glm-ocr-mmproj-f16.gguf"]
    assert sha256(a[0]) == sha256(b[0]) and sha256(a[1]) == sha256(b[1])
    assert sha256(pair[0]) != sha256(a[0]) and sha256(pair[1]) != sha256(a[1])   # the fixture: seed 0
    for p in (*a, *b):
        p.unlink()


@pytest.mark.parametrize("shape,base,image", [(OCR, 59246, 59280), (V41, 151329, 151343)])
def test_vocab_keeps_the_real_special_ids(shape, base, image):
    tokens, types = G.vocab_tokens(shape)
    assert len(tokens) == G.SHAPES[shape]["n_vocab"]
    assert tokens[base] == "<|endoftext|>" and tokens[base + 7] == "<|user|>"
    assert tokens[base + 10] == "<|begin_of_image|>" and tokens[base + 11] == "<|end_of_image|>"
    assert tokens[image] == "<|image|>"
    for tok, i in G.SPECIAL_IDS[shape].items():
        assert tokens[i] == tok and types[i] == 3                       # control
    small, _ = G.vocab_tokens(shape, 512)
    assert len(small) == 512 and set(G.SPECIAL_IDS[shape]) <= set(small)


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "glm4"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 2 and kv(f"{a}.nextn_predict_layers") == 1
    assert kv(f"{a}.embedding_length") == 1536 and kv(f"{a}.feed_forward_length") == 4608
    assert kv(f"{a}.attention.head_count") == 16 and kv(f"{a}.attention.head_count_kv") == 8
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 128
    assert kv(f"{a}.rope.dimension_count") == 128                       # partial_rotary_factor 1
    # as conversion/glm.py writes it: Glm4Model.__init__ sets use_mrope from mrope_section
    assert kv(f"{a}.rope.dimension_sections") == [16, 24, 24, 0]
    assert kv(f"{a}.rope.freq_base") == 10000.0 and kv(f"{a}.context_length") == 131072
    toks = kv("tokenizer.ggml.tokens")
    assert toks[kv("tokenizer.ggml.eos_token_id")] == "<|endoftext|>"
    assert toks[kv("tokenizer.ggml.eot_token_id")] == "<|user|>"
    assert not kv("tokenizer.ggml.add_bos_token")
    assert kv("tokenizer.chat_template") == G.CHAT_TEMPLATE
    want = {n: (s, d) for n, s, d, _ in G.text_tensors(OCR, 1, 512)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want) and "blk.1.nextn.shared_head_head.weight" in got
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "glm4v"
    assert kv("clip.vision.projection_dim") == 1536 and kv("clip.vision.embedding_length") == 1024
    assert kv("clip.vision.block_count") == 1 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.image_size") == 336 and kv("clip.vision.feed_forward_length") == 4096
    assert kv("clip.use_silu") is True and "clip.use_gelu" not in r.fields
    want = {n: (s, d) for n, s, d, _ in G.mmproj_tensors(OCR, 1)}
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want)
    for n, (shape, dtype) in want.items():
        assert tuple(int(x) for x in got[n].shape[::-1]) == shape, n
        assert got[n].tensor_type.name == ("F16" if dtype == np.float16 else "F32"), n

    sizes = G.sizes(OCR, 1, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def _expected_grid(width: int, height: int) -> tuple[int, int]:
    """llama.cpp's glm4v sizing: sides rounded to multiples of patch 14 x merge 2 = 28 px,
    kept within clip.cpp's 8..4096-token budget (and HF's Glm4vImageProcessor 12544 ..
    9633792 px: the same here, no rescale for a small page); one token per 28 x 28 px."""
    f = 28
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    assert 8 * f * f <= h * w <= 4096 * f * f and 12544 <= h * w
    return w // f, h // f


def _tokens(eng, text: str) -> list[int]:
    from foveate.native import bindings as B

    raw = text.encode()
    out = (B.llama.llama_token * 64)()
    n = B.llama.llama_tokenize(eng._vocab, raw, len(raw), out, 64, False, True)
    return list(out[:n])


def test_pair_reads_a_page(pair, page):
    from PIL import Image

    from foveate import Reader

    width, height = Image.open(page).size                     # 448 x 224
    nx, ny = _expected_grid(width, height)
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        eng = r.engine
        assert eng.format_prompt("OCR:") == (                 # llama.cpp's chatglm4
            "[gMASK]<sop><|user|>\n<__media__>\nOCR:<|assistant|>\n")
        assert len(_tokens(eng, "[gMASK]<sop><|begin_of_image|><|end_of_image|>")) == 4
        res = r.read(page, prompt="OCR:", max_tokens=4)
        st = res.stats
        assert st.image_tokens == nx * ny == 16 * 8
        assert eng._last_grid == (nx, ny, 1)
        # text tokens: [gMASK] <sop> <|user|> \n <|begin_of_image|> | <|end_of_image|> \n O C R :
        # <|assistant|> \n  (the markers are text tokens outside the image chunk)
        assert st.prompt_tokens == st.image_tokens + 13
        assert st.stop_reason in ("max_tokens", "eos")
        assert st.tokens_generated == 4 or st.stop_reason == "eos"


def test_image_rows_are_patches_with_mrope_positions(pair, page):
    """GLM-OCR as converted carries M-RoPE sections: mtmd decodes the image chunk (only merged
    patches, no marker rows) with (t, y, x, 0) positions on the 16 x 8 grid."""
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
        assert sum(n for n, _, _ in seen) == st.image_tokens == 128
        assert all(k == 4 for _, k, _ in seen)
        pos = np.concatenate([p.reshape(k, n).T for n, k, p in seen])
        t0 = pos[0, 0]
        assert (pos[:, 0] == t0).all()
        assert (pos[:, 1] - t0).tolist() == [i // 16 for i in range(128)]
        assert (pos[:, 2] - t0).tolist() == [i % 16 for i in range(128)]
    finally:
        eng.close()


@pytest.mark.parametrize("opts", [{"merge": 0.5}, {"fixation": 0.05},
                                  {"merge": 0.5, "fixation": 0.05}])
def test_pair_reads_with_merging_and_fixation(pair, page, opts):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1, **opts) as r:
        st = r.read(page, prompt="OCR:", max_tokens=4).stats
    assert st.image_tokens == 128 and st.stop_reason in ("max_tokens", "eos")
    if "merge" in opts:
        assert st.image_tokens_merged == 64
    if "fixation" in opts:
        assert 0 < st.visual_tokens_selected < st.image_tokens
