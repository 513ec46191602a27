"""InternVL3 shape writer (instruments/shapes/internvl.py): the full-size tensor list is the
converted model's, generation is deterministic, and a reduced pair runs llama.cpp's qwen2 +
mtmd's internvl path on a page, untiled (one 448 x 448 chunk) and tiled (2 tiles + thumbnail),
with merging and fixation."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import internvl as M
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "internvl3-1b"
VOCAB = 512      # the character vocab padded to 512 instead of 151674: same code paths


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return M.write_pair(tmp_path_factory.mktemp("internvl"), SHAPE, layers=1, vocab=VOCAB)


@pytest.fixture(scope="module")
def wide_page(page, tmp_path_factory):
    """The test page scaled to 896 x 448: over 448 px wide, so mtmd tiles it (2 x 1)."""
    from PIL import Image

    out = tmp_path_factory.mktemp("internvl-page") / "page-896x448.png"
    Image.open(page).convert("RGB").resize((896, 448)).save(out)
    return out


def test_the_shape_is_registered():
    assert family_module(SHAPE) is M


def test_full_size_matches_the_real_model():
    text = {n: (s, d) for n, s, d, _ in M.text_tensors(SHAPE)}
    proj = {n: (s, d) for n, s, d, _ in M.mmproj_tensors(SHAPE)}
    # qwen2: 24 x 12 (q/k/v with biases) + embd, output norm, untied output; InternViT 24 x 18
    # (+ ls1 / ls2) + CLS, patch w/b, positions + mlp1's 6
    assert len(text) == 24 * 12 + 3 == 291 and len(proj) == 24 * 18 + 4 + 6 == 442
    assert text["token_embd.weight"] == ((151674, 896), np.float16)
    assert text["output.weight"] == ((151674, 896), np.float16)      # tie_word_embeddings false
    assert text["blk.23.attn_q.weight"][0] == (896, 896)              # 14 heads x 64
    assert text["blk.23.attn_k.weight"][0] == text["blk.23.attn_v.weight"][0] == (128, 896)
    assert text["blk.0.attn_q.bias"] == ((896,), np.float32)
    assert text["blk.0.attn_k.bias"] == ((128,), np.float32)
    assert "blk.0.attn_q_norm.weight" not in text                     # qwen2: no QK-norm
    assert text["blk.0.ffn_gate.weight"][0] == (4864, 896)
    assert text["blk.0.ffn_down.weight"][0] == (896, 4864)
    assert proj["v.class_embd"] == ((1, 1, 1024), np.float32)
    assert proj["v.position_embd.weight"] == ((1, 1025, 1024), np.float32)   # 32^2 + CLS
    assert proj["v.patch_embd.weight"] == ((1024, 3, 14, 14), np.float16)
    assert proj["v.patch_embd.bias"] == ((1024,), np.float32)
    assert sum(n.endswith("attn_q.weight") for n in proj) == 24
    assert "v.blk.0.attn_qkv.weight" not in proj                      # split by the converter
    assert proj["v.blk.23.ls1.weight"] == proj["v.blk.23.ls2.weight"] == ((1024,), np.float32)
    assert proj["v.blk.23.ffn_up.weight"][0] == (4096, 1024)
    assert "v.post_ln.weight" not in proj and "v.pre_ln.weight" not in proj
    assert proj["mm.model.mlp.0.weight"] == ((4096,), np.float32)    # LayerNorm over 2x2 x 1024
    assert proj["mm.model.mlp.1.weight"] == ((896, 4096), np.float16)
    assert proj["mm.model.mlp.3.weight"] == ((896, 896), np.float16)
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            if n in ("v.class_embd", "v.position_embd.weight"):
                continue                                              # 3-D, kept F32
            assert d == (np.float32 if len(s) == 1 else np.float16), n

    sizes = M.sizes(SHAPE)
    # Qwen2.5-0.5B with an untied lm_head (0.63B) + InternViT-300M and mlp1 (0.31B): "1B"
    assert sizes["text"]["params"] == 629_697_920
    assert sizes["mmproj"]["params"] == 308_495_104
    assert 0.9e9 < sizes["text"]["params"] + sizes["mmproj"]["params"] < 0.95e9
    assert 1.26e9 < sizes["text"]["bytes"] < 1.27e9 and 0.61e9 < sizes["mmproj"]["bytes"] < 0.63e9


def test_generation_is_deterministic(pair, tmp_path):
    a = M.write_pair(tmp_path / "a", SHAPE, layers=1, seed=0, vocab=VOCAB)
    b = M.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=VOCAB)
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
    assert kv(f"{a}.block_count") == 1 and kv(f"{a}.embedding_length") == 896
    assert kv(f"{a}.attention.head_count") == 14 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.feed_forward_length") == 4864 and kv(f"{a}.context_length") == 32768
    assert kv(f"{a}.rope.freq_base") == 1e6
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert {"<img>", "</img>", "<IMG_CONTEXT>"} <= set(tokens)
    assert kv("tokenizer.chat_template") == M.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(M.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "internvl"
    assert kv("clip.vision.image_size") == 448 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.projector.scale_factor") == 2
    assert kv("clip.vision.preproc_min_tiles") == 1 and kv("clip.vision.preproc_max_tiles") == 12
    assert kv("clip.use_gelu") is True and kv("clip.vision.projection_dim") == 896
    assert kv("clip.vision.block_count") == 1
    want = {n: (s, d) for n, s, d, _ in M.mmproj_tensors(SHAPE, 1)}
    got = tensors_read(r)
    got = {n: (tuple(x for x in s if x != 1) if n in ("v.class_embd", "v.position_embd.weight")
               else s, t) for n, (s, t) in got.items()}   # the reader drops trailing 1-dims
    want = {n: (tuple(x for x in s if x != 1) if n in ("v.class_embd", "v.position_embd.weight")
                else s, d) for n, (s, d) in want.items()}
    assert got == {n: (s, "F16" if d == np.float16 else "F32") for n, (s, d) in want.items()}

    sizes = M.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_tile_grid_is_mtmds():
    # no side over 448: one stretched chunk; wider pages: best candidate grid + thumbnail
    assert M.tile_grid(448, 224) is None and M.image_tokens(448, 224) == 256
    assert M.tile_grid(896, 448) == (2, 1) and M.image_tokens(896, 448) == 3 * 256
    assert M.tile_grid(1700, 2200) == (3, 4) and M.image_tokens(1700, 2200) == 13 * 256


def _chat_tokens(n_image: int) -> int:
    # <|im_start|> user \n | <img> [image chunks] </img> | \n O C R | <|im_end|> \n <|im_start|>
    # assistant \n: one token per character or special
    return (1 + 4 + 1) + 1 + n_image + 1 + (1 + 3) + (1 + 1 + 1 + 9 + 1)


def test_pair_reads_a_page(pair, page, wide_page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        # llama.cpp takes the jinja for ChatML (it has <|im_start|>)
        assert r.engine.format_prompt("OCR") == (
            f"<|im_start|>user\n{r.engine.marker}\nOCR<|im_end|>\n<|im_start|>assistant\n")
        small = r.read(page, prompt="OCR", max_tokens=4).stats
        tiled = r.read(wide_page, prompt="OCR", max_tokens=2).stats
    assert small.image_tokens == M.image_tokens(448, 224) == 256
    assert small.prompt_tokens == _chat_tokens(256)
    assert small.encode_ms > 0 and small.prefill_ms > 0
    assert small.stop_reason in ("max_tokens", "eos")
    assert tiled.image_tokens == M.image_tokens(896, 448) == 768       # 2 tiles + thumbnail
    assert tiled.prompt_tokens == _chat_tokens(768)


def test_merged_rows_keep_their_1d_positions(pair, wide_page):
    """Merging on a tiled InternVL page: every row is content; each of the three chunks keeps
    half its rows at their unmerged 1-D positions; fixation then selects among kept rows."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=4096, threads=1, merge=0.5, fixation=0.05,
                 fixation_k_min=4)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(
            (b.n_pos, np.ctypeslib.as_array(b.pos, shape=(b.n_pos * b.n_tokens,)).copy()))
        n_past, st = eng.prefill_page(load_page(wide_page), prompt="OCR")
        assert st.image_tokens == 768 and st.image_tokens_merged == 384
        assert all(n == 1 for n, _ in seen)                 # 1-D positions (pos type NORMAL)
        pos = np.concatenate([p for _, p in seen])
        assert len(pos) == 384 and (np.diff(pos) > 0).all()
        p0 = 1 + 4 + 1 + 1                                   # <|im_start|> user \n <img>
        assert pos.min() >= p0 and pos.max() < p0 + 768
        assert n_past == p0 + 768 + 1 + 4 + 13
        eng._decode_one(int(eng.logits().argmax()), n_past)
        assert 4 <= len(eng.fixation_selection()) <= 384
    finally:
        eng.close()
