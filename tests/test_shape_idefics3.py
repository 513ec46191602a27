"""Idefics3 shape writer (instruments/shapes/idefics3.py: granite-docling-258M, SmolDocling-256M):
the full-size tensor lists are the converted models', generation is deterministic, the files
read back, and a cut pair runs llama.cpp's llama + mtmd's idefics3 path on a page: the page
becomes tiles plus a global view, one image chunk each, with the row/column marker text
between them."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import idefics3 as I
from shape_checks import sha256, tensors_read, tensors_written

SHAPES = ["granite-docling-258m", "smoldocling-256m"]
VOCAB = 512      # the character vocab padded to 512 instead of 100352 / 49280: same code paths


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    # one text and one vision layer: the 448 x 224 page is 8 tiles + the global view, 9 x 1024
    # patches to encode
    d = tmp_path_factory.mktemp("idefics3")
    return {s: I.write_pair(d / s, s, layers=1, vocab=VOCAB) for s in SHAPES}


def test_the_shapes_are_registered():
    assert all(family_module(s) is I for s in SHAPES)


def _dtype_rule(name, shape):
    # 1-D tensors F32, matrices F16, except the vision embeddings the converter keeps in F32
    if len(shape) == 1 or name in ("v.patch_embd.weight", "v.position_embd.weight"):
        return np.float32
    return np.float16


@pytest.mark.parametrize("shape", SHAPES)
def test_full_size_matches_the_real_model(shape):
    text = {n: (s, d) for n, s, d, _ in I.text_tensors(shape)}
    proj = {n: (s, d) for n, s, d, _ in I.mmproj_tensors(shape)}
    tied = shape == "granite-docling-258m"
    n_vocab = 100352 if tied else 49280
    # llama: 30 x 9 + token_embd + output_norm (+ output); SigLIP: 3 embeddings + 12 x 16 +
    # post_ln w/b + the connector
    assert len(text) == 30 * 9 + 2 + (0 if tied else 1)
    assert len(proj) == 3 + 12 * 16 + 2 + 1 == 198
    assert ("output.weight" in text) is not tied
    assert text["token_embd.weight"] == ((n_vocab, 576), np.float16)
    if not tied:
        assert text["output.weight"] == ((n_vocab, 576), np.float16)
    assert text["blk.29.attn_q.weight"][0] == text["blk.29.attn_output.weight"][0] == (576, 576)
    assert text["blk.29.attn_k.weight"][0] == text["blk.29.attn_v.weight"][0] == (192, 576)
    assert text["blk.0.ffn_gate.weight"][0] == text["blk.0.ffn_up.weight"][0] == (1536, 576)
    assert text["blk.0.ffn_down.weight"][0] == (576, 1536)
    assert not any(n.endswith(".bias") for n in text)            # attention_bias false
    assert proj["v.patch_embd.weight"] == ((768, 3, 16, 16), np.float32)
    assert proj["v.patch_embd.bias"] == ((768,), np.float32)
    assert proj["v.position_embd.weight"] == ((1024, 768), np.float32)   # 32 x 32 patches
    assert sum(n.endswith("attn_q.weight") for n in proj) == 12
    assert proj["v.blk.11.ffn_up.weight"][0] == (3072, 768)       # fc1
    assert proj["v.blk.11.ffn_down.weight"][0] == (768, 3072)     # fc2
    assert all(f"v.blk.11.{t}.bias" in proj
               for t in ("attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up",
                         "ffn_down"))
    assert proj["mm.model.fc.weight"] == ((576, 12288), np.float16)   # 4 x 4 x 768 -> 576
    assert "mm.model.fc.bias" not in proj
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            assert d == _dtype_rule(n, s), n

    sizes = I.sizes(shape)
    body = 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576 + 2 * 576) + 576
    assert sizes["text"]["params"] == body + n_vocab * 576 * (1 if tied else 2)
    assert sizes["mmproj"]["params"] == 93_510_912
    total = sizes["text"]["params"] + sizes["mmproj"]["params"]
    if tied:   # "Granite 165M" + siglip2-base: "258M"
        assert sizes["text"]["params"] == 164_006_208 and total == 257_517_120
    else:      # SmolVLM-256M-Instruct's parameter total, to the unit
        assert sizes["text"]["params"] == 162_974_016 and total == 256_484_928
    assert 0.189e9 < sizes["mmproj"]["bytes"] < 0.191e9       # F16, the embeddings F32
    # F16 weights + the F32 norms and the vocab in the header
    assert 0 < sizes["text"]["bytes"] - 2 * sizes["text"]["params"] < 4e6


def test_special_tokens_sit_at_their_real_ids():
    tokens, types = I.vocab_of("granite-docling-258m")
    assert len(tokens) == 100352
    for t, i in [("<|end_of_text|>", 100257), ("<|start_of_role|>", 100264),
                 ("<image>", 100270), ("<fake_token_around_image>", 100339),
                 ("<global-img>", 100340), ("<row_1_col_1>", 100258), ("<row_4_col_4>", 100349),
                 ("</doctag>", 100328), ("</code>", 100351)]:
        assert tokens[i] == t and types[i] == I.CONTROL
    tokens, _ = I.vocab_of("smoldocling-256m")
    assert len(tokens) == 49280
    for t, i in [("<|im_start|>", 1), ("<global-img>", 49152), ("<row_1_col_1>", 49153),
                 ("<row_6_col_6>", 49188), ("<fake_token_around_image>", 49189),
                 ("<image>", 49190), ("<end_of_utterance>", 49279)]:
        assert tokens[i] == t
    for s in SHAPES:   # mtmd looks "\n\n" up as one token of the vocab
        assert I.vocab_of(s)[0].count("\n\n") == I.vocab_of(s, VOCAB)[0].count("\n\n") == 1


def test_generation_is_deterministic(pairs, tmp_path):
    shape = SHAPES[0]
    a = I.write_pair(tmp_path / "a", shape, layers=1, seed=0, vocab=VOCAB)
    b = I.write_pair(tmp_path / "b", shape, layers=1, seed=3, vocab=VOCAB)
    assert [p.name for p in a] == [p.name for p in pairs[shape]] == [
        f"{shape}-f16.gguf", f"{shape}-mmproj-f16.gguf"]
    assert [sha256(p) for p in a] == [sha256(p) for p in pairs[shape]]    # same seed: same bytes
    assert sha256(a[0]) != sha256(b[0]) and sha256(a[1]) != sha256(b[1])
    for f in (*a, *b):
        f.unlink()


@pytest.mark.parametrize("shape", SHAPES)
def test_files_read_back(pairs, shape):
    import gguf

    model, mmproj = pairs[shape]
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "llama"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 1 and kv(f"{a}.embedding_length") == 576
    assert kv(f"{a}.attention.head_count") == 9 and kv(f"{a}.attention.head_count_kv") == 3
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 64
    assert kv(f"{a}.rope.dimension_count") == 64 and kv(f"{a}.vocab_size") == VOCAB
    assert kv(f"{a}.feed_forward_length") == 1536 and kv(f"{a}.context_length") == 8192
    assert kv(f"{a}.rope.freq_base") == 1e5
    assert abs(kv(f"{a}.attention.layer_norm_rms_epsilon") - 1e-5) < 1e-12
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    bos, eos, _, _ = I.SPECIALS[shape]
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == eos
    assert tokens[kv("tokenizer.ggml.bos_token_id")] == bos
    assert kv("tokenizer.ggml.add_bos_token") is False
    assert kv("tokenizer.chat_template") == I.CHAT_TEMPLATES[shape]
    assert tensors_read(r) == tensors_written(I.text_tensors(shape, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "idefics3"
    assert kv("clip.vision.image_size") == 512 and kv("clip.vision.patch_size") == 16
    assert kv("clip.vision.projector.scale_factor") == 4 and kv("clip.use_gelu") is True
    assert kv("clip.vision.preproc_image_size") == 2048
    assert kv("clip.vision.projection_dim") == 576 and kv("clip.vision.block_count") == 1
    assert kv("clip.vision.image_mean") == kv("clip.vision.image_std") == [0.5, 0.5, 0.5]
    assert tensors_read(r) == tensors_written(I.mmproj_tensors(shape, 1))

    sizes = I.sizes(shape, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


# mtmd's rule for this projector (mtmd_image_preprocessor_idefics3): longest edge to 2048 (up
# as well as down), the other side int(2048 / aspect) made even, both ceiled to 512 px tiles.
# The 448 x 224 page: 2048 x 1024 -> 4 x 2 tiles + the global view = 9 chunks of (512/16/4)^2
# = 64 rows: 576 image rows. A US-letter page (8.5 x 11 in, any dpi): 1582 x 2048 -> 4 x 4
# tiles + global = 17 x 64 = 1088 rows.
PAGE_ROWS, PAGE_CHUNKS = 9 * 64, 9
# the marker text between the chunks: <fake_token_around_image><row_r_col_c> before each of
# the 8 tiles, "\n" after the first grid row, "\n\n" <fake_token_around_image><global-img>
# before the global view and <fake_token_around_image> after it
PAGE_MARKERS = 8 * 2 + 1 + 3 + 1
# what the chat templates put around "{marker}\nOCR", one token per character or special
PROMPTS = {
    # llama.cpp's GRANITE_3_X format (= the jinja for a string content)
    "granite-docling-258m": ("<|start_of_role|>user<|end_of_role|>{m}\nOCR<|end_of_text|>\n"
                             "<|start_of_role|>assistant<|end_of_role|>",
                             (1 + 4 + 1) + (1 + 3 + 1 + 1 + 1 + 9 + 1)),
    # the family renders the HF jinja ("User:<image>PROMPT"); llama.cpp's SMOLVLM format would
    # write "User: <image>\nPROMPT"
    "smoldocling-256m": ("<|im_start|>User:{m}OCR<end_of_utterance>\nAssistant:",
                         (1 + 5) + (3 + 1 + 1 + 10)),
}


def test_image_token_rule():
    for s in SHAPES:
        assert I.image_tokens(448, 224, s) == PAGE_ROWS
        assert I.image_chunks(448, 224, s) == PAGE_CHUNKS
        assert I.marker_tokens(448, 224, s) == PAGE_MARKERS
        for w, h in [(1700, 2200), (2550, 3300), (1224, 1584)]:   # letter at 200 / 300 / 144 dpi
            assert I.tile_grid(w, h, s) == (4, 4) and I.image_tokens(w, h, s) == 1088
        assert I.tile_grid(2048, 100, s) == (4, 1) and I.image_tokens(100, 2048, s) == 320


@pytest.mark.parametrize("shape", SHAPES)
def test_pair_reads_a_page(pairs, page, shape):
    from foveate import Reader

    model, mmproj = pairs[shape]
    tmpl, n_text = PROMPTS[shape]
    with Reader(model, mmproj, n_ctx=4096, threads=2) as r:
        assert r.engine.projector_type == "idefics3"
        assert r.engine.format_prompt("OCR") == tmpl.format(m=r.engine.marker)
        res = r.read(page, prompt="OCR", max_tokens=4)
        nx, ny, n_chunks = r.engine._last_grid
    st = res.stats
    assert st.image_tokens == PAGE_ROWS == I.image_tokens(448, 224, shape)
    assert n_chunks == PAGE_CHUNKS and (nx, ny) == (64, 1)   # one chunk of 64 rows a view
    assert st.encode_ms > 0 and st.prefill_ms > 0
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"
    assert st.prompt_tokens == PAGE_ROWS + PAGE_MARKERS + n_text


def test_marker_text_between_the_chunks(pairs, page):
    """mtmd's chunks for the page: the chat text, then per tile the marker text and 64 rows,
    a newline between grid rows, the global view last; text and image chunks alternate."""
    from foveate import Reader
    from foveate.inputs.images import load_page
    from foveate.native import bindings as B

    mtmd, llama = B.mtmd, B.llama
    model, mmproj = pairs["granite-docling-258m"]
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        eng = r.engine

        def piece(t):
            buf = ctypes.create_string_buffer(64)
            n = llama.llama_token_to_piece(eng._vocab, t, buf, 64, 0, True)
            return buf.raw[:n].decode()

        parts = []
        with eng._tokenized(load_page(page), eng.format_prompt("OCR").encode()) as chunks:
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                ch = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    parts.append(mtmd.mtmd_input_chunk_get_n_tokens(ch))
                    continue
                n = ctypes.c_size_t(0)
                toks = mtmd.mtmd_input_chunk_get_tokens_text(ch, ctypes.byref(n))
                parts.append("".join(piece(toks[j]) for j in range(n.value)))
    tile = "<fake_token_around_image><row_{}_col_{}>"
    want = ["<|start_of_role|>user<|end_of_role|>" + tile.format(1, 1), 64]
    for r_, c in [(1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4)]:
        want += [("\n" if (r_, c) == (2, 1) else "") + tile.format(r_, c), 64]
    want += ["\n\n<fake_token_around_image><global-img>", 64,
             "<fake_token_around_image>\nOCR<|end_of_text|>\n<|start_of_role|>assistant"
             "<|end_of_role|>"]
    assert parts == want
