"""LightOnOCR shape writer (instruments/shapes/lightonocr.py): the full-size tensor list is the
converted model's, generation is deterministic, and a reduced pair runs llama.cpp's qwen3 +
mtmd's lightonocr path on a page, with merging and fixation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import lightonocr as L
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "lightonocr-1b"
VOCAB = 512      # the character vocab padded to 512 instead of 151936: same code paths


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # one text and one vision layer: the page is scaled to 1540 px, 6160 patches to encode
    return L.write_pair(tmp_path_factory.mktemp("lightonocr"), SHAPE, layers=1, vocab=VOCAB)


def test_the_shape_is_registered():
    assert family_module(SHAPE) is L


def test_full_size_matches_the_real_model():
    text = {n: (s, d) for n, s, d, _ in L.text_tensors(SHAPE)}
    proj = {n: (s, d) for n, s, d, _ in L.mmproj_tensors(SHAPE)}
    # what llama.cpp's converter makes of LightOnOCR: qwen3 28 x 11 + 2; pixtral 24 x 9 + 6
    assert len(text) == 310 and len(proj) == 222
    assert "output.weight" not in text                      # tied embeddings
    assert text["token_embd.weight"] == ((151936, 1024), np.float16)
    assert text["blk.27.attn_q.weight"][0] == (2048, 1024)  # 16 heads x 128
    assert text["blk.27.attn_k.weight"][0] == text["blk.27.attn_v.weight"][0] == (1024, 1024)
    assert text["blk.27.attn_output.weight"][0] == (1024, 2048)
    assert text["blk.0.attn_q_norm.weight"] == ((128,), np.float32)
    assert text["blk.0.ffn_gate.weight"][0] == (3072, 1024)
    assert text["blk.0.ffn_down.weight"][0] == (1024, 3072)
    assert proj["v.patch_embd.weight"] == ((1024, 3, 14, 14), np.float16)
    assert "v.patch_embd.bias" not in proj and "v.position_embd.weight" not in proj
    assert sum(n.endswith("attn_q.weight") for n in proj) == 24
    assert proj["v.blk.23.ffn_gate.weight"][0] == (4096, 1024)
    assert proj["v.blk.23.ffn_down.weight"][0] == (1024, 4096)
    assert proj["mm.input_norm.weight"] == ((1024,), np.float32)
    assert proj["mm.patch_merger.weight"] == ((1024, 4096), np.float16)   # 2 x 2 x 1024 -> 1024
    assert proj["mm.1.weight"][0] == proj["mm.2.weight"][0] == (1024, 1024)
    assert not any(n.startswith("mm.") and n.endswith(".bias") for n in proj)
    assert "v.token_embd.img_break" not in proj             # use_break_tok = False
    # every 1-D tensor is F32, every matrix F16, as converted
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            assert d == (np.float32 if len(s) == 1 else np.float16), n

    sizes = L.sizes(SHAPE)
    # Qwen3-0.6B's 0.6B (0.44B without the embedding) + the Pixtral-style encoder: "1B"
    assert sizes["text"]["params"] == 596_049_920
    assert sizes["text"]["params"] - 151936 * 1024 == 440_467_456
    assert sizes["mmproj"]["params"] == 409_597_952
    assert 0.98e9 < sizes["text"]["params"] + sizes["mmproj"]["params"] < 1.03e9
    assert 1.19e9 < sizes["text"]["bytes"] < 1.2e9 and 0.81e9 < sizes["mmproj"]["bytes"] < 0.83e9


def test_generation_is_deterministic(pair, tmp_path):
    a = L.write_pair(tmp_path / "a", SHAPE, layers=1, seed=0, vocab=VOCAB)
    b = L.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=VOCAB)
    assert [p.name for p in a] == [p.name for p in pair] == [f"{SHAPE}-f16.gguf",
                                                            f"{SHAPE}-mmproj-f16.gguf"]
    assert [sha256(p) for p in a] == [sha256(p) for p in pair]        # same seed: same bytes
    assert sha256(a[0]) != sha256(b[0]) and sha256(a[1]) != sha256(b[1])
    for f in (*a, *b):
        f.unlink()


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "qwen3"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 1 and kv(f"{a}.embedding_length") == 1024
    assert kv(f"{a}.attention.head_count") == 16 and kv(f"{a}.attention.head_count_kv") == 8
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 128
    assert kv(f"{a}.feed_forward_length") == 3072 and kv(f"{a}.context_length") == 16384
    assert kv(f"{a}.rope.freq_base") == 1e6
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert kv("tokenizer.chat_template") == L.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(L.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "lightonocr"
    assert kv("clip.vision.image_size") == 1540 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.spatial_merge_size") == 2 and kv("clip.use_silu") is True
    assert kv("clip.vision.projection_dim") == 1024 and kv("clip.vision.block_count") == 1
    assert tensors_read(r) == tensors_written(L.mmproj_tensors(SHAPE, 1))

    sizes = L.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


# mtmd's rule for this projector (mtmd_image_preprocessor_longest_edge): scale the page so its
# longest edge is 1540 (up as well as down), ceil both sides to 28 = patch 14 x merge 2, one
# row per 28 x 28 cell, no [IMG_BREAK] rows. The 448 x 224 page: x 3.4375 -> 1540 x 770 ->
# 1540 x 784 -> 55 x 28 = 1540 rows. (HF's PixtralImageProcessor only scales down: 16 x 8 =
# 128 rows + 8 break/end tokens; mtmd's count differs from the reference's here.)
_SCALE = min(1540 / 448, 1540 / 224)
PAGE_ROWS = math.ceil(448 * _SCALE / 28) * math.ceil(224 * _SCALE / 28)


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    assert PAGE_ROWS == 55 * 28 == L.image_tokens(448, 224) == 1540
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        assert r.engine.family.family.key == "lightonocr"
        # llama.cpp takes the jinja for ChatML (it has <|im_start|>)
        assert r.engine.format_prompt("OCR") == (
            f"<|im_start|>user\n{r.engine.marker}\nOCR<|im_end|>\n<|im_start|>assistant\n")
        st = r.read(page, prompt="OCR", max_tokens=4).stats
    assert st.image_tokens == PAGE_ROWS
    assert st.encode_ms > 0 and st.prefill_ms > 0
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"
    # the chat text is one token per character or special: <|im_start|> user \n, then mtmd's
    # <|im_start|> [image] <|im_end|> (text tokens around the chunk, no rows in it), \n OCR
    # <|im_end|> \n <|im_start|> assistant \n
    assert st.prompt_tokens == PAGE_ROWS + (1 + 4 + 1) + 2 + (1 + 3 + 1 + 1 + 1 + 9 + 1)


def test_merged_rows_keep_their_1d_positions(pair, page):
    """Merging on LightOnOCR: every row is content (no learned markers in the chunk), half are
    kept, at their unmerged 1-D positions; the text after the image goes on as if unmerged;
    fixation then selects among the kept rows while decoding."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=4096, threads=1, merge=0.5, fixation=0.05,
                 fixation_k_min=4)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(
            (b.n_pos, np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).copy()))
        n_past, st = eng.prefill_page(load_page(page), prompt="OCR")
        kept = eng.merge_kept()
        assert st.image_tokens == PAGE_ROWS and len(kept) == st.image_tokens_merged == 770
        assert all(n == 1 for n, _ in seen)                 # 1-D positions (pos type NORMAL)
        p0 = 1 + 4 + 1 + 1                                   # <|im_start|> user \n <|im_start|>
        assert np.concatenate([p for _, p in seen]).tolist() == [p0 + i for i in kept]
        assert n_past == p0 + PAGE_ROWS + 1 + 1 + 3 + 1 + 1 + 1 + 9 + 1
        eng._decode_one(int(eng.logits().argmax()), n_past)
        assert 4 <= len(eng.fixation_selection()) <= len(kept)
    finally:
        eng.close()
