"""MiniCPM-V 4.6 shape writer (instruments/shapes/minicpmv.py): the full-size tensor list is the
converted model's, generation is deterministic, and a reduced pair (1 ViT layer, 4 hybrid text
layers: 3 gated-delta-net + 1 attention) runs llama.cpp's qwen35 + mtmd's minicpmv4_6 path on a
page, unsliced (one 448 x 448 chunk) and sliced (overview + 2 slices), with merging and fixation."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import minicpmv as M
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "minicpm-v-4.6"
VOCAB = 512      # the character vocab padded to 512 instead of 248094: same code paths


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # ~170 MB text + ~320 MB projector (the ViT merger's 4608 x 17216 MLP is not cut)
    return M.write_pair(tmp_path_factory.mktemp("minicpmv"), SHAPE, layers=1, vocab=VOCAB)


@pytest.fixture(scope="module")
def wide_page(page, tmp_path_factory):
    """The test page scaled to 896 x 448: over 448 px wide, so mtmd slices it (2 x 1)."""
    from PIL import Image

    out = tmp_path_factory.mktemp("minicpmv-page") / "page-896x448.png"
    Image.open(page).convert("RGB").resize((896, 448)).save(out)
    return out


def test_the_shape_is_registered():
    assert family_module(SHAPE) is M


def test_full_size_matches_the_real_model():
    text = {n: (s, d) for n, s, d, _ in M.text_tensors(SHAPE)}
    proj = {n: (s, d) for n, s, d, _ in M.mmproj_tensors(SHAPE)}
    # qwen35: 18 linear-attention layers x 14 + 6 attention layers x 11 + embd + output norm
    assert len(text) == 18 * 14 + 6 * 11 + 2 == 320
    # SigLIP 27 x 16 + patch w/b, positions, post-LN w/b; ViT merger 16; final merger 6
    assert len(proj) == 3 + 27 * 16 + 2 + 16 + 6 == 459
    assert "output.weight" not in text                              # tied
    assert text["token_embd.weight"] == ((248094, 1024), np.float16)
    assert M.recurrent_layers(SHAPE) == [(i + 1) % 4 != 0 for i in range(24)]
    # linear attention (layer 0)
    assert text["blk.0.attn_qkv.weight"][0] == (6144, 1024)          # 2 x 16 x 128 + 16 x 128
    assert text["blk.0.attn_gate.weight"][0] == (2048, 1024)
    assert text["blk.0.ssm_conv1d.weight"] == ((6144, 4), np.float32)
    assert text["blk.0.ssm_a"] == text["blk.0.ssm_dt.bias"] == ((16,), np.float32)
    assert text["blk.0.ssm_beta.weight"][0] == text["blk.0.ssm_alpha.weight"][0] == (16, 1024)
    assert text["blk.0.ssm_norm.weight"] == ((128,), np.float32)
    assert text["blk.0.ssm_out.weight"][0] == (1024, 2048)
    assert "blk.0.attn_q.weight" not in text
    # full attention (layer 3): q with its output gate (8 x 256 x 2), 2 KV heads of 256
    assert text["blk.3.attn_q.weight"][0] == (4096, 1024)
    assert text["blk.3.attn_k.weight"][0] == text["blk.3.attn_v.weight"][0] == (512, 1024)
    assert text["blk.3.attn_output.weight"][0] == (1024, 2048)
    assert text["blk.3.attn_q_norm.weight"] == ((256,), np.float32)
    assert "blk.3.attn_qkv.weight" not in text
    assert text["blk.23.post_attention_norm.weight"] == ((1024,), np.float32)
    assert text["blk.23.ffn_gate.weight"][0] == (3584, 1024)
    assert proj["v.patch_embd.weight"] == ((1152, 3, 14, 14), np.float16)
    assert proj["v.position_embd.weight"] == ((4900, 1152), np.float32)   # 70 x 70 buckets
    assert sum(n.endswith("attn_q.weight") and n.startswith("v.blk.") for n in proj) == 27
    assert proj["v.vit_merger.attn_q.weight"][0] == (1152, 1152)
    assert proj["v.vit_merger.ds_ln.weight"] == ((4608,), np.float32)
    assert proj["v.vit_merger.ds_ffn_up.weight"] == ((17216, 4608), np.float16)
    assert proj["v.vit_merger.ds_ffn_down.weight"] == ((1152, 17216), np.float16)
    assert proj["mm.input_norm.weight"] == ((4608,), np.float32)
    assert proj["mm.up.weight"] == ((4608, 4608), np.float16)
    assert proj["mm.down.weight"] == ((1024, 4608), np.float16)
    for specs in (text, proj):
        for n, (s, d) in specs.items():
            if n.endswith(("ssm_conv1d.weight", "position_embd.weight")):
                assert d == np.float32, n                              # forced F32
                continue
            assert d == (np.float32 if len(s) == 1 else np.float16), n

    sizes = M.sizes(SHAPE)
    # Qwen3.5-0.8B (0.75B) + SigLIP and the two mergers (0.55B): "1.3B"
    assert sizes["text"]["params"] == 752_161_600
    assert sizes["mmproj"]["params"] == 548_266_416
    assert 1.28e9 < sizes["text"]["params"] + sizes["mmproj"]["params"] < 1.32e9


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
    a = "qwen35"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 4 and kv(f"{a}.embedding_length") == 1024
    assert kv(f"{a}.attention.head_count") == 8 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.attention.key_length") == 256
    assert kv(f"{a}.ssm.inner_size") == 2048 and kv(f"{a}.ssm.group_count") == 16
    assert kv(f"{a}.attention.recurrent_layers") == [True, True, True, False]
    assert kv(f"{a}.rope.dimension_count") == 64
    assert kv(f"{a}.rope.dimension_sections") == [11, 11, 10, 0]
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB
    assert tokens[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert {"<image>", "</image>", "<slice>", "</slice>"} <= set(tokens)
    assert kv("tokenizer.chat_template") == M.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(M.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("general.architecture") == "clip"
    assert kv("clip.projector_type") == "minicpmv4_6"
    assert kv("clip.vision.image_size") == 448 and kv("clip.vision.patch_size") == 14
    assert kv("clip.vision.projector.scale_factor") == 4
    assert kv("clip.vision.wa_layer_indexes") == [0]          # the cut ViT's insert layer
    assert kv("clip.vision.block_count") == 1
    assert tensors_read(r) == tensors_written(M.mmproj_tensors(SHAPE, 1))

    sizes = M.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_slicing_is_mtmds():
    # no side over 448: one 448 x 448 chunk of 32 x 32 patches / 16
    assert M.slices(448, 224) == ((448, 448), None, None) and M.image_tokens(448, 224) == 64
    # 896 x 448: overview 616 x 336 (66 rows) + 2 x 1 slices of 448 x 448 (64 each)
    assert M.slices(896, 448) == ((616, 336), (2, 1), (448, 448))
    assert M.image_tokens(896, 448) == 66 + 2 * 64
    # US letter at 200 dpi: overview 392 x 504 and 3 x 3 slices of 392 x 504, 63 rows each
    assert M.slices(1700, 2200) == ((392, 504), (3, 3), (392, 504))
    assert M.image_tokens(1700, 2200) == 10 * 63 == 630
    assert M.text_tokens_between(1700, 2200) == 2 + 9 * 2 + 2


def _chat_tokens(n_image: int, n_between: int) -> int:
    # <|im_start|> user \n | <image> ... (mtmd's text tokens around the chunks) | \n O C R |
    # <|im_end|> \n <|im_start|> assistant \n | <think> \n \n </think> \n \n (thinking off)
    return (1 + 4 + 1) + n_image + n_between + (1 + 3) + (1 + 1 + 1 + 9 + 1) + (1 + 2 + 1 + 2)


def test_pair_reads_a_page(pair, page, wide_page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=2048, threads=1) as r:
        # Qwen3.5's jinja rendered with thinking off (llama.cpp's heuristic would take it for
        # ChatML and leave the model to open a reasoning block)
        assert r.engine.format_prompt("OCR") == (
            f"<|im_start|>user\n{r.engine.marker}\nOCR<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n\n</think>\n\n")
        small = r.read(page, prompt="OCR", max_tokens=3).stats
        sliced = r.read(wide_page, prompt="OCR", max_tokens=2).stats
    assert small.image_tokens == M.image_tokens(448, 224) == 64
    assert small.prompt_tokens == _chat_tokens(64, M.text_tokens_between(448, 224))
    assert small.encode_ms > 0 and small.prefill_ms > 0
    assert small.stop_reason in ("max_tokens", "eos")
    assert sliced.image_tokens == M.image_tokens(896, 448) == 194     # overview + 2 slices
    assert sliced.prompt_tokens == _chat_tokens(194, M.text_tokens_between(896, 448))


def test_merging_and_fixation_run(pair, wide_page):
    """Merging on a sliced page: every row is content; the three chunks keep half their rows,
    with M-RoPE positions (4 streams per row); fixation selects among the kept rows while
    decoding (the 3 gated-delta-net layers keep no KV cells; the attention layer does)."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    eng = Engine(model, mmproj, n_ctx=2048, threads=1, merge=0.5, fixation=0.05,
                 fixation_k_min=4)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(b.n_pos)
        n_past, st = eng.prefill_page(load_page(wide_page), prompt="OCR")
        assert st.image_tokens == 194 and st.image_tokens_merged == 33 + 32 + 32
        assert seen and all(n == 4 for n in seen)            # M-RoPE (pos type MROPE)
        eng._decode_one(int(eng.logits().argmax()), n_past)
        assert 4 <= len(eng.fixation_selection()) <= 97
    finally:
        eng.close()
