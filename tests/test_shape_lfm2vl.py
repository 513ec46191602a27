"""LFM2-VL shape writer (instruments/shapes/lfm2vl.py): the full-size tensor lists are the
converted models' (LFM2-VL-450M / -1.6B: 148 text tensors, 201 / 441 projector tensors, as the
official checkpoints' 349 / 589 tensors convert), generation is deterministic, the files read
back, mtmd's tiling rule is reproduced, and a cut pair (3 text layers: conv, conv, attention;
1 ViT layer; 512-token vocab) reads a page through llama.cpp's lfm2 hybrid memory and mtmd's
lfm2 projector with the model's own chat template, tiled or not, with merging and fixation."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import lfm2vl as L
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "lfm2-vl-450m"
VOCAB = 512      # the character vocab padded to 512 instead of 65536 (the specials keep their ids)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # layers=1: the ViT cut to 1 layer, the text stack to 3 (conv, conv, attention)
    return L.write_pair(tmp_path_factory.mktemp("lfm2vl"), SHAPE, layers=1, vocab=VOCAB)


def test_shapes_are_discovered():
    assert family_module("lfm2-vl-450m") is L and family_module("lfm2-vl-1.6b") is L


@pytest.mark.parametrize("shape,d,ff,heads,vd,vff,n_v,text_params,proj_params", [
    ("lfm2-vl-450m", 1024, 4608, 16, 768, 3072, 12, 354_483_968, 94_234_880),
    ("lfm2-vl-1.6b", 2048, 8192, 32, 1152, 4304, 27, 1_170_340_608, 426_285_296)])
def test_full_size_matches_the_real_model(shape, d, ff, heads, vd, vff, n_v, text_params,
                                          proj_params):
    text = {n: (s, t) for n, s, t, _ in L.text_tensors(shape)}
    proj = {n: (s, t) for n, s, t, _ in L.mmproj_tensors(shape)}
    # embd + its norm; 16 x (2 norms + 3 FFN); 6 attention x 6; 10 conv x 3; tied (no output)
    assert len(text) == 2 + 16 * 5 + 6 * 6 + 10 * 3 == 148 and "output.weight" not in text
    # patch embd + bias, positions; n_v x 16; post LayerNorm 2; mm.1 / mm.2 with biases
    assert len(proj) == 3 + n_v * 16 + 2 + 4
    assert text["token_embd.weight"] == ((65536, d), np.float16)
    assert text["token_embd_norm.weight"] == ((d,), np.float32)
    attn = [i for i in range(16) if f"blk.{i}.attn_q.weight" in text]
    conv = [i for i in range(16) if f"blk.{i}.shortconv.conv.weight" in text]
    assert attn == [2, 5, 8, 10, 12, 14] and sorted(attn + conv) == list(range(16))
    hd = d // heads                                               # 64
    assert text["blk.14.attn_q.weight"][0] == (d, d)
    assert text["blk.14.attn_k.weight"][0] == text["blk.14.attn_v.weight"][0] == (8 * hd, d)
    assert text["blk.14.attn_q_norm.weight"] == ((hd,), np.float32)
    assert text["blk.0.shortconv.conv.weight"] == ((d, 3), np.float32)    # squeezed, forced F32
    assert text["blk.0.shortconv.in_proj.weight"] == ((3 * d, d), np.float16)
    assert text["blk.15.ffn_gate.weight"][0] == (ff, d) and text["blk.15.ffn_down.weight"][0] == (d, ff)
    assert proj["v.patch_embd.weight"] == ((vd, 3, 16, 16), np.float16)
    assert proj["v.position_embd.weight"] == ((256, vd), np.float32)  # 16 x 16, forced F32
    assert proj[f"v.blk.{n_v - 1}.ffn_up.weight"] == ((vff, vd), np.float16)
    assert proj["v.post_ln.bias"] == ((vd,), np.float32)
    assert proj["mm.1.weight"] == ((2048, 4 * vd), np.float16)     # after the 2x2 unshuffle
    assert proj["mm.2.weight"] == ((d, 2048), np.float16) and "mm.input_norm.weight" not in proj
    for specs in (text, proj):   # the converter's rule: 1-D and norms F32, the conv F32
        for n, (s, t) in specs.items():
            f32 = len(s) == 1 or "conv.weight" in n or "position_embd" in n
            assert t == (np.float32 if f32 else np.float16), n

    sizes = L.sizes(shape)
    assert sizes["text"]["params"] == text_params    # LM 350M / 1.2B (model card)
    assert sizes["mmproj"]["params"] == proj_params  # SigLIP2 86M / 400M + the projector
    assert round((text_params + proj_params) / 1e8) == {"lfm2-vl-450m": 4, "lfm2-vl-1.6b": 16}[shape]


def test_cut_stacks_keep_an_attention_and_a_conv_layer():
    S = L.SHAPES[SHAPE]
    for layers, n_text in ((1, 3), (3, 3), (6, 6), (16, 16), (40, 16)):
        names = [n for n, *_ in L.text_tensors(SHAPE, layers, VOCAB)]
        assert sum(n.endswith("ffn_up.weight") for n in names) == n_text
        assert sum(n.endswith("attn_q.weight") for n in names) == sum(
            i < n_text for i in S["attn_layers"]) >= 1
        assert sum(n.endswith("shortconv.conv.weight") for n in names) >= 2
        v = sum(n.endswith("attn_q.weight") for n, *_ in L.mmproj_tensors(SHAPE, layers))
        assert v == min(layers, 12)


def test_vocab_keeps_the_real_special_ids():
    for vocab in (None, VOCAB):
        tokens, _ = L.vocab_tokens(SHAPE, vocab)
        for tok, i in L.SPECIAL_IDS.items():
            assert tokens[i] == tok
    assert len(L.vocab_tokens(SHAPE)[0]) == 65536 and len(L.vocab_tokens(SHAPE, VOCAB)[0]) == VOCAB


def test_generator_is_deterministic(pair, tmp_path):
    a = L.write_pair(tmp_path / "a", SHAPE, layers=1, seed=0, vocab=VOCAB)
    b = L.write_pair(tmp_path / "b", SHAPE, layers=1, seed=5, vocab=VOCAB)
    assert [p.name for p in a] == ["lfm2-vl-450m-f16.gguf", "lfm2-vl-450m-mmproj-f16.gguf"]
    assert [sha256(p) for p in a] == [sha256(p) for p in pair]          # same seed: same bytes
    assert sha256(a[0]) != sha256(b[0]) and sha256(a[1]) != sha256(b[1])
    for f in (*a, *b):
        f.unlink()


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "lfm2"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 3 and kv(f"{a}.embedding_length") == 1024
    assert kv(f"{a}.attention.head_count_kv") == [0, 0, 8]      # 0 on the conv layers
    assert kv(f"{a}.feed_forward_length") == 4608 and kv(f"{a}.shortconv.l_cache") == 3
    assert kv(f"{a}.context_length") == 128000 and kv(f"{a}.vocab_size") == VOCAB
    tokens = kv("tokenizer.ggml.tokens")
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>" == tokens[7]
    assert tokens[kv("tokenizer.ggml.bos_token_id")] == "<|startoftext|>" == tokens[1]
    assert kv("tokenizer.ggml.add_bos_token") is True
    assert kv("tokenizer.chat_template") == L.CHAT_TEMPLATE and len(L.CHAT_TEMPLATE) == 434
    assert tensors_read(r) == tensors_written(L.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "lfm2"
    assert kv("clip.vision.image_size") == 256 and kv("clip.vision.patch_size") == 16
    assert kv("clip.vision.projector.scale_factor") == 2 and kv("clip.use_gelu") is True
    assert kv("clip.vision.projection_dim") == 1024 and kv("clip.vision.block_count") == 1
    assert tensors_read(r) == tensors_written(L.mmproj_tensors(SHAPE, 1))

    sizes = L.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_image_tokens_follow_mtmds_tiling_rule():
    # up to 2 x 512 x 512 px (sides rounded to 32): one chunk, 32 x 32 px per token, 64..256
    assert L.image_chunks(448, 224) == [14 * 7]
    assert L.image_chunks(100, 60) == [77]                  # scaled up to >= 64 tokens
    assert L.image_chunks(1024, 512) == [22 * 11]           # 524288 px: not tiled, scaled down
    # more: 512 px tiles of 256 tokens (the grid of 2..10 nearest the page's aspect), then the
    # thumbnail; a US-letter page at 200 dpi is 2 x 3 tiles + a 14 x 18 thumbnail
    assert L.tile_grid(1700, 2200) == (2, 3)
    assert L.image_chunks(1700, 2200) == [256] * 6 + [14 * 18]
    assert L.image_tokens(1700, 2200) == 1788 == L.image_tokens(2550, 3300)
    assert L.image_chunks(1100, 560) == [256, 256, 242]
    assert L.image_tokens(1024, 1024, "lfm2-vl-1.6b") == 5 * 256     # 2 x 2 + thumbnail


def _tokenize(engine, text: str) -> list[int]:

    from foveate.native import bindings as B

    raw = text.encode()
    out = (B.llama.llama_token * 64)()
    n = B.llama.llama_tokenize(engine._vocab, raw, len(raw), out, 64, False, True)
    assert n > 0
    return list(out[:n])


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=2) as r:
        # ChatML by llama.cpp's heuristic; the tokenizer adds the jinja's {{bos_token}}
        assert r.engine.format_prompt("OCR") == (
            f"<|im_start|>user\n{r.engine.marker}\nOCR<|im_end|>\n<|im_start|>assistant\n")
        st = r.read(page, prompt="OCR", max_tokens=4).stats
        # mtmd's image and tile markers are single control tokens at their real ids
        assert _tokenize(r.engine, "<|image_start|><|img_row_1_col_2|><|img_thumbnail|>"
                                   "<|image_end|>") == [498, 398, 497, 499]
    assert st.image_tokens == L.image_tokens(448, 224) == 98       # one chunk, not tiled
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"
    # BOS <|im_start|> user \n <|image_start|> [98] <|image_end|> \n OCR <|im_end|> \n
    # <|im_start|> assistant \n: one token per character or special
    assert st.prompt_tokens == 1 + 1 + 4 + 1 + 1 + 98 + 1 + 1 + 3 + 1 + 1 + 1 + 9 + 1
    # fixation on the attention layer's KV cells (the conv layers keep their state), merging
    with Reader(model, mmproj, n_ctx=4096, threads=2, merge=0.5, fixation=0.05,
                fixation_k_min=4) as r:
        st = r.read(page, prompt="OCR", max_tokens=4).stats
    assert st.image_tokens == 98 and st.image_tokens_merged == 49
    assert st.visual_tokens_selected == 4 and st.focal_layers == [2]
    assert st.stop_reason in ("max_tokens", "eos")


def test_a_tiled_page_reads_with_both_methods(pair, tmp_path):
    """A page over 2 x 512 x 512 px: 2 x 1 tiles and a thumbnail, three image chunks."""
    from PIL import Image, ImageDraw

    from foveate import Reader

    path = tmp_path / "wide.png"
    img = Image.new("RGB", (1100, 560), "white")
    ImageDraw.Draw(img).text((40, 40), "Hello, tiles", fill="black")
    img.save(path)
    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=2, merge=0.5, fixation=0.05,
                fixation_k_min=4) as r:
        st = r.read(path, prompt="OCR", max_tokens=2).stats
    assert st.image_tokens == 256 + 256 + 242
    assert st.image_tokens_merged == st.image_tokens // 2
    # text: the prompt's 26 tokens (as above) + <|img_row_1_col_1|> <|img_row_1_col_2|>
    # <|img_thumbnail|> between the chunks, + the kept image rows
    assert st.prompt_tokens == 26 + 3 + st.image_tokens_merged
    assert st.visual_tokens_selected == -(-st.image_tokens_merged * 5 // 100)
