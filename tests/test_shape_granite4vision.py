"""Granite Vision 4.1 shape writer (instruments/shapes/granite4vision.py): the full-size tensor
list is the converted model's, generation is deterministic, and a reduced pair (1 ViT layer,
2 text layers, 2 of the 8 projector streams) runs llama.cpp's granite (deepstack) + mtmd's
granite4_vision anyres path on a page."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import granite4vision as G
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "granite-vision-4.1-4b"
VOCAB = 512      # the character vocab padded to 512 instead of 100353: same code paths


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # ~320 MB text (2 layers of 2560) + ~120 MB projector
    return G.write_pair(tmp_path_factory.mktemp("granite4v"), SHAPE, layers=1, vocab=VOCAB)


def test_the_shape_is_registered():
    assert family_module(SHAPE) is G


def test_full_size_matches_the_real_model():
    text = {n: (s, d) for n, s, d, _ in G.text_tensors(SHAPE)}
    proj = {n: (s, d) for n, s, d, _ in G.mmproj_tensors(SHAPE)}
    # granite: 40 x 9 + embd + output norm, tied; SigLIP 27 x 16 + patch w/b, positions,
    # post-LN w/b, image_newline; 8 Q-Former projectors x 34
    assert len(text) == 40 * 9 + 2 == 362
    assert len(proj) == 3 + 27 * 16 + 2 + 1 + 8 * 34 == 710
    assert "output.weight" not in text
    assert text["token_embd.weight"] == ((100353, 2560), np.float16)
    assert text["blk.39.attn_q.weight"][0] == (2560, 2560)            # 40 heads x 64
    assert text["blk.39.attn_k.weight"][0] == text["blk.39.attn_v.weight"][0] == (512, 2560)
    assert text["blk.0.ffn_gate.weight"][0] == (8192, 2560)
    assert not any(n.endswith(".bias") for n in text)
    assert proj["v.patch_embd.weight"] == ((1152, 3, 16, 16), np.float16)
    assert proj["v.position_embd.weight"] == ((576, 1152), np.float32)   # 24 x 24
    assert sum(n.endswith("attn_q.weight") and n.startswith("v.blk.") for n in proj) == 27
    assert proj["v.blk.26.ffn_up.weight"][0] == (4304, 1152)
    assert proj["v.image_newline"] == ((2560,), np.float32)
    assert sum(n.endswith(".linear.weight") for n in proj) == 8
    assert proj["v.proj_blk.7.query"] == ((1, 16, 1152), np.float32)       # 4 x 4 queries
    assert proj["v.proj_blk.7.img_pos"] == ((1, 64, 1152), np.float32)     # 8 x 8 window
    assert proj["v.proj_blk.0.cross_attn_k.weight"][0] == (1152, 1152)
    assert proj["v.proj_blk.0.ffn_up.weight"][0] == (3072, 1152)
    assert proj["v.proj_blk.0.linear.weight"] == ((2560, 1152), np.float16)
    # the streams by text layer: 4 layerwise (ViT 26, 20, 14, 8), then 4 spatial (ViT 26)
    pm = G.projector_map(SHAPE)
    assert [(v, t) for v, t, _, _ in pm] == [(26, 0), (20, 3), (14, 6), (8, 9),
                                             (26, 12), (26, 15), (26, 18), (26, 21)]
    ds = G.deepstack_mapping(SHAPE)
    assert len(ds) == 40 and {i: k for i, k in enumerate(ds) if k >= 0} == {
        3: 1, 6: 2, 9: 3, 12: 4, 15: 5, 18: 6, 21: 7}
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            if n.endswith((".query", ".img_pos", "position_embd.weight")):
                assert d == np.float32, n
                continue
            assert d == (np.float32 if len(s) == 1 else np.float16), n

    sizes = G.sizes(SHAPE)
    # the Granite 4.1 3.4B decoder (tied) + SigLIP2-so400m and 8 projectors (0.58B): "4B"
    assert sizes["text"]["params"] == 3_402_839_040
    assert sizes["mmproj"]["params"] == 579_129_072
    assert 3.9e9 < sizes["text"]["params"] + sizes["mmproj"]["params"] < 4.1e9


def test_generation_is_deterministic(pair, tmp_path):
    a = G.write_pair(tmp_path / "a", SHAPE, layers=1, seed=0, vocab=VOCAB)
    b = G.write_pair(tmp_path / "b", SHAPE, layers=1, seed=3, vocab=VOCAB)
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
    a = "granite"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 2 and kv(f"{a}.embedding_length") == 2560
    assert kv(f"{a}.attention.head_count") == 40 and kv(f"{a}.attention.head_count_kv") == 8
    assert kv(f"{a}.logit_scale") == 10.0 and kv(f"{a}.embedding_scale") == 12.0
    assert kv(f"{a}.deepstack_mapping") == [-1, 1]         # the cut pair's 2 streams
    assert kv(f"{a}.rope.freq_base") == 1e7
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|end_of_text|>"
    assert kv("tokenizer.chat_template") == G.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(G.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "granite4_vision"
    assert kv("clip.vision.image_size") == 384 and kv("clip.vision.patch_size") == 16
    assert kv("clip.vision.projector.query_side") == 4
    assert kv("clip.vision.projector.window_side") == 8
    assert kv("clip.vision.feature_layer") == [0, 0]
    assert kv("clip.vision.projector.spatial_offsets") == [-1, 0]
    assert len(kv("clip.vision.image_grid_pinpoints")) == 2 * 27
    assert kv("clip.vision.image_grid_pinpoints")[:4] == [384, 384, 768, 384]   # (w, h)
    want = {n: (s, d) for n, s, d, _ in G.mmproj_tensors(SHAPE, 1)}
    got = tensors_read(r)
    squeeze = lambda s: tuple(x for x in s if x != 1)   # the reader drops trailing 1-dims
    assert {n: (squeeze(s), t) for n, (s, t) in got.items()} == {
        n: (squeeze(s), "F16" if d == np.float16 else "F32") for n, (s, d) in want.items()}

    sizes = G.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_anyres_counts_are_mtmds():
    # 448 x 224: the 768 x 384 pinpoint (2 x 1 tiles) -> overview 144 + 12 rows of (24 + nl)
    assert G.tile_grid(448, 224) == (2, 1) and G.newline_grid(448, 224) == (24, 12)
    assert G.image_tokens(448, 224) == 144 + 12 * 25 == 444
    # US letter at 200 dpi: 3 x 3 tiles, the 36 x 36 grid unpadded to 28 wide
    assert G.tile_grid(1700, 2200) == (3, 3) and G.newline_grid(1700, 2200) == (28, 36)
    assert G.image_tokens(1700, 2200) == 144 + 36 * 29 == 1188


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=2048, threads=1) as r:
        # llama.cpp takes the jinja for Granite 4.1 (<|start_of_role|> with <tool_call>)
        assert r.engine.format_prompt("OCR") == (
            f"<|start_of_role|>user<|end_of_role|>{r.engine.marker}\nOCR<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>")
        st = r.read(page, prompt="OCR", max_tokens=3).stats
    assert st.image_tokens == G.image_tokens(448, 224) == 444
    assert st.encode_ms > 0 and st.prefill_ms > 0
    assert st.stop_reason in ("max_tokens", "eos")
    # <|start_of_role|> user <|end_of_role|> | [image chunk] "\n" (mtmd) | \n O C R
    # <|end_of_text|> \n <|start_of_role|> assistant <|end_of_role|>
    assert st.prompt_tokens == (1 + 4 + 1) + 444 + 1 + (1 + 3) + (1 + 1 + 1 + 9 + 1)


def test_merging_and_fixation_run(pair, page):
    """Merging and fixation on the one anyres chunk (1-D positions). The 12 learned newline
    rows are 2 x 2560 wide copies of `v.image_newline` (one per deepstack stream of this cut),
    which the marker hooks find by value, repeated across the row: they are kept as markers
    and half of the 432 content rows go (216 + 12; merged like content it was 222)."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=1, merge=0.5, fixation=0.05,
                 fixation_k_min=4)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(b.n_pos)
        n_past, st = eng.prefill_page(load_page(page), prompt="OCR")
        assert st.image_tokens == 444 and st.image_tokens_merged == 216 + 12
        assert seen and all(n == 1 for n in seen)            # 1-D positions (pos type NORMAL)
        eng._decode_one(int(eng.logits().argmax()), n_past)
        assert 4 <= len(eng.fixation_selection()) <= st.image_tokens_merged
    finally:
        eng.close()
