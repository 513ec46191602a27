"""dots.ocr shape writer (instruments/shapes/dotsocr.py): the full-size tensor list is the
converted model's, generation is deterministic, and a reduced pair runs llama.cpp's qwen2 +
mtmd's dots_ocr path on a page, with merging and fixation."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import dotsocr as D
from foveate.instruments.shapes import family_module
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "dots-ocr"
VOCAB = 512      # the character vocab padded to 512 instead of 151936: same code paths


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return D.write_pair(tmp_path_factory.mktemp("dotsocr"), SHAPE, layers=1, vocab=VOCAB)


def test_the_shape_is_registered():
    assert family_module(SHAPE) is D


def test_full_size_matches_the_real_model():
    text = {n: (s, d) for n, s, d, _ in D.text_tensors(SHAPE)}
    proj = {n: (s, d) for n, s, d, _ in D.mmproj_tensors(SHAPE)}
    # what llama.cpp's converter makes of dots.ocr: qwen2 28 x 12 + 3; dots ViT 42 x 7 + 10
    assert len(text) == 339 and len(proj) == 304
    assert text["token_embd.weight"] == text["output.weight"] == ((151936, 1536), np.float16)
    assert text["blk.27.attn_q.weight"][0] == (1536, 1536)
    assert text["blk.27.attn_k.weight"][0] == text["blk.27.attn_v.weight"][0] == (256, 1536)
    assert text["blk.27.attn_k.bias"] == ((256,), np.float32)          # attention_bias
    assert "blk.0.attn_output.bias" not in text and "blk.0.attn_q_norm.weight" not in text
    assert text["blk.0.ffn_up.weight"][0] == (8960, 1536)
    assert proj["v.patch_embd.weight"] == ((1536, 3, 14, 14), np.float16)
    assert proj["v.patch_embd.bias"] == ((1536,), np.float32)          # the conv's own bias
    assert sum(n.endswith("attn_qkv.weight") for n in proj) == 42
    assert proj["v.blk.41.attn_qkv.weight"][0] == (4608, 1536)
    assert not any(n.startswith("v.blk.") and n.endswith(".bias") for n in proj)  # use_bias off
    assert proj["v.blk.41.ffn_gate.weight"][0] == (4224, 1536)
    assert proj["v.blk.41.ffn_down.weight"][0] == (1536, 4224)
    assert proj["mm.post_norm.weight"] == ((1536,), np.float32)        # post_trunk_norm
    assert proj["mm.input_norm.bias"] == ((1536,), np.float32)         # merger LayerNorm
    assert proj["mm.0.weight"] == ((6144, 6144), np.float16)
    assert proj["mm.2.weight"] == ((1536, 6144), np.float16)
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            assert d == (np.float32 if len(s) == 1 else np.float16), n

    sizes = D.sizes(SHAPE)
    # "1.7B" LLM (1.54B without its two vocab matrices) + the ~1.2B NaViT: 3.04B published
    assert sizes["text"]["params"] == 1_777_088_000
    assert sizes["text"]["params"] - 2 * 151936 * 1536 == 1_310_340_608
    assert sizes["mmproj"]["params"] == 1_262_091_264
    assert round((sizes["text"]["params"] + sizes["mmproj"]["params"]) / 1e9, 2) == 3.04
    assert 3.55e9 < sizes["text"]["bytes"] < 3.57e9 and 2.52e9 < sizes["mmproj"]["bytes"] < 2.53e9


def test_generation_is_deterministic(pair, tmp_path):
    a = D.write_pair(tmp_path / "a", SHAPE, layers=1, seed=0, vocab=VOCAB)
    b = D.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=VOCAB)
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
    a = "qwen2"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 1 and kv(f"{a}.embedding_length") == 1536
    assert kv(f"{a}.attention.head_count") == 12 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.feed_forward_length") == 8960 and kv(f"{a}.context_length") == 131072
    assert kv(f"{a}.rope.freq_base") == 1e6
    assert f"{a}.rope.dimension_sections" not in r.fields     # 1-D RoPE, no M-RoPE
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|endoftext|>"
    assert kv("tokenizer.chat_template") == D.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(D.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "dots_ocr"
    assert kv("clip.vision.image_size") == 0 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.projector.scale_factor") == 2 and kv("clip.use_silu") is True
    assert kv("clip.vision.image_min_pixels") == 3136
    assert kv("clip.vision.image_max_pixels") == 11289600
    assert kv("clip.vision.projection_dim") == 1536 and kv("clip.vision.block_count") == 1
    assert tensors_read(r) == tensors_written(D.mmproj_tensors(SHAPE, 1))

    sizes = D.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


# dots' smart_resize (dots_ocr/utils/image_utils.py, Qwen2-VL's; mtmd's dyn_size preprocessor):
# round each side to a multiple of 28 (patch 14 x merge 2), keep the pixel count within
# [3136, 11289600]; one row per 28 x 28 cell. The 448 x 224 page stays 448 x 224: 16 x 8 = 128.
PAGE_ROWS = round(448 / 28) * round(224 / 28)


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    assert PAGE_ROWS == 128 == D.image_tokens(448, 224)
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=2048, threads=1) as r:
        assert r.engine.family.family.key == "dotsocr"
        # llama.cpp would take the template for GLM-Edge's (no <|endofuser|>): foveate renders
        # the GGUF's jinja (engine/families.py, jinja=True)
        assert r.engine.format_prompt("OCR") == f"<|user|>{r.engine.marker}\nOCR<|endofuser|><|assistant|>"
        st = r.read(page, prompt="OCR", max_tokens=4).stats
    assert st.image_tokens == PAGE_ROWS
    assert st.encode_ms > 0 and st.prefill_ms > 0
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"
    # one token per character or special: <|user|> \n, then mtmd's <|img|> [image]
    # <|endofimg|> (text tokens around the chunk, no rows in it), \n OCR <|assistant|>
    assert st.prompt_tokens == PAGE_ROWS + 2 + 2 + (1 + 3 + 1)


@pytest.mark.parametrize("positions", ["original", "consecutive"])
def test_merged_rows_and_their_1d_positions(pair, page, positions):
    """Merging on dots.ocr: every row is content (no learned markers in the chunk), half are
    kept, at their unmerged 1-D positions (gaps) or renumbered, as asked."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=1, merge=0.5, merge_positions=positions)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(
            (b.n_pos, np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).copy()))
        n_past, st = eng.prefill_page(load_page(page), prompt="OCR")
        kept = eng.merge_kept()
        assert st.image_tokens == PAGE_ROWS and len(kept) == st.image_tokens_merged == 64
        assert all(n == 1 for n, _ in seen)                 # 1-D positions (pos type NORMAL)
        pos = np.concatenate([p for _, p in seen]).tolist()
        p0 = 2                                               # <|user|> <|img|>
        after = 1 + 1 + 3 + 1 + 1                            # <|endofimg|> \n OCR <|endofuser|> <|assistant|>
        if positions == "original":
            assert pos == [p0 + i for i in kept]
            assert n_past == p0 + PAGE_ROWS + after
        else:
            assert pos == list(range(p0, p0 + len(kept)))
            assert n_past == p0 + len(kept) + after
        eng._decode_one(int(eng.logits().argmax()), n_past)
    finally:
        eng.close()


def test_fixation_reads_a_page(pair, page):
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=1, fixation=0.05, fixation_k_min=4)
    try:
        n_past, st = eng.prefill_page(load_page(page), prompt="OCR")
        for _ in range(3):
            eng._decode_one(int(eng.logits().argmax()), n_past)
            n_past += 1
        assert len(eng.fixation_selection()) == 7               # ceil(0.05 x 128)
    finally:
        eng.close()
