"""Qwen3.5 shape writer (instruments/shapes/qwen35.py): the full-size tensor lists are the
converted models' (Qwen3.5-0.8B / -2B: 24 hybrid layers, 18 Gated DeltaNet + 6 gated attention,
the MTP block the default conversion keeps; Qwen3-VL's ViT without deepstack), generation is
deterministic, the files read back, and a cut pair (4 text layers: three DeltaNet and one
attention layer, + the MTP block; 1 ViT layer; 512-token vocab) reads a page through llama.cpp's
qwen35 hybrid memory and mtmd's qwen3vl_merger projector with the model's own chat template,
with merging and fixation."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.instruments.shapes import family_module
from foveate.instruments.shapes import qwen35 as Q
from shape_checks import sha256, tensors_read, tensors_written

SHAPE = "qwen3.5-0.8b"
VOCAB = 512


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # layers=1: the ViT cut to 1 layer, the text trunk to 4 (DeltaNet x 3, attention)
    return Q.write_pair(tmp_path_factory.mktemp("qwen35"), SHAPE, layers=1, vocab=VOCAB)


def test_shapes_are_discovered():
    assert family_module("qwen3.5-0.8b") is Q and family_module("qwen3.5-2b") is Q


@pytest.mark.parametrize("shape,d,ff,vd,n_v,text_params,proj_params", [
    ("qwen3.5-0.8b", 1024, 3584, 768, 12, 772_845_888, 100_592_896),
    ("qwen3.5-2b", 2048, 6144, 1024, 24, 1_942_653_248, 331_416_576)])
def test_full_size_matches_the_real_model(shape, d, ff, vd, n_v, text_params, proj_params):
    text = {n: (s, t) for n, s, t, _ in Q.text_tensors(shape)}
    proj = {n: (s, t) for n, s, t, _ in Q.mmproj_tensors(shape)}
    # embd + output norm (tied); 18 DeltaNet x 14; 6 attention x 11; the MTP block 11 + 4
    assert len(text) == 2 + 18 * 14 + 6 * 11 + 15 == 335 and "output.weight" not in text
    # 2 patch kernels + bias, positions; n_v x 12; post LayerNorm 2; merger 4; no deepstack
    assert len(proj) == 4 + n_v * 12 + 2 + 4
    assert not any(n.startswith("v.deepstack.") for n in proj)
    assert text["token_embd.weight"] == ((248320, d), np.float16)
    attn = [i for i in range(25) if f"blk.{i}.attn_q.weight" in text]
    assert attn == [3, 7, 11, 15, 19, 23, 24]                      # 24: the MTP block
    assert sum(n.endswith("ssm_conv1d.weight") for n in text) == 18
    # gated attention: q is query + gate, 8 heads of 256; 2 KV heads
    assert text["blk.3.attn_q.weight"] == ((2 * 8 * 256, d), np.float16)
    assert text["blk.3.attn_k.weight"][0] == text["blk.3.attn_v.weight"][0] == (512, d)
    assert text["blk.3.attn_output.weight"][0] == (d, 2048)
    assert text["blk.3.attn_q_norm.weight"] == ((256,), np.float32)
    # DeltaNet: q, k of 16 x 128 and v of 16 x 128 in one projection; conv over those channels
    assert text["blk.0.attn_qkv.weight"] == ((6144, d), np.float16)
    assert text["blk.0.attn_gate.weight"] == ((2048, d), np.float16)
    assert text["blk.0.ssm_conv1d.weight"] == ((6144, 4), np.float32)   # forced F32
    assert text["blk.0.ssm_a"] == text["blk.0.ssm_dt.bias"] == ((16,), np.float32)
    assert text["blk.0.ssm_beta.weight"] == text["blk.0.ssm_alpha.weight"] == ((16, d), np.float16)
    assert text["blk.0.ssm_norm.weight"] == ((128,), np.float32)
    assert text["blk.0.ssm_out.weight"] == ((d, 2048), np.float16)
    assert text["blk.0.post_attention_norm.weight"] == ((d,), np.float32)
    assert text["blk.22.ffn_up.weight"][0] == (ff, d)
    assert text["blk.24.nextn.eh_proj.weight"] == ((d, 2 * d), np.float16)
    assert text["blk.24.nextn.shared_head_norm.weight"] == ((d,), np.float32)
    assert proj["v.patch_embd.weight"] == proj["v.patch_embd.weight.1"] == ((vd, 3, 16, 16), np.float16)
    assert proj["v.position_embd.weight"] == ((2304, vd), np.float32)
    assert proj[f"v.blk.{n_v - 1}.attn_qkv.weight"] == ((3 * vd, vd), np.float16)
    assert proj["mm.0.weight"][0] == (4 * vd, 4 * vd) and proj["mm.2.weight"][0] == (d, 4 * vd)
    for specs in (text, proj):   # the converter's rule: 1-D and norms F32, conv / positions F32
        for n, (s, t) in specs.items():
            f32 = len(s) == 1 or "conv1d" in n or "position_embd" in n
            assert t == (np.float32 if f32 else np.float16), n

    sizes = Q.sizes(shape)
    assert sizes["text"]["params"] == text_params and sizes["mmproj"]["params"] == proj_params
    assert round((text_params + proj_params) / 1e8) == {"qwen3.5-0.8b": 9, "qwen3.5-2b": 23}[shape]


def test_cut_stacks_keep_a_deltanet_and_an_attention_layer():
    assert Q.recurrent_layers(SHAPE) == [(i + 1) % 4 != 0 for i in range(24)] + [False]
    assert Q.recurrent_layers(SHAPE, 1) == [True, True, True, False, False]
    for layers, n_trunk in ((1, 4), (4, 4), (8, 8), (24, 24), (99, 24)):
        names = [n for n, *_ in Q.text_tensors(SHAPE, layers, VOCAB)]
        assert sum(n.endswith("ffn_up.weight") for n in names) == n_trunk + 1     # + MTP
        assert sum(n.endswith("attn_q.weight") for n in names) == n_trunk // 4 + 1
        assert sum(n.endswith("ssm_out.weight") for n in names) == n_trunk - n_trunk // 4
        v = sum(n.endswith("attn_qkv.weight") for n, *_ in Q.mmproj_tensors(SHAPE, layers))
        assert v == min(layers, 12)


def test_generator_is_deterministic(pair, tmp_path):
    b = Q.write_pair(tmp_path / "b", SHAPE, layers=1, seed=0, vocab=VOCAB)
    assert [p.name for p in b] == ["qwen3.5-0.8b-f16.gguf", "qwen3.5-0.8b-mmproj-f16.gguf"]
    assert sha256(pair[0]) == sha256(b[0]) and sha256(pair[1]) == sha256(b[1])
    for p in b:
        p.unlink()
    from foveate.instruments.shapes.gguf_specs import write_gguf   # another seed: other weights

    c = write_gguf(tmp_path / "c.gguf", "clip", Q.mmproj_tensors(SHAPE, 1),
                   Q._mmproj_kv(SHAPE, 1), seed=4)
    assert sha256(c) != sha256(pair[1])
    c.unlink()


def test_vocab_keeps_the_real_special_ids():
    tokens, _ = Q.vocab_tokens(SHAPE)
    assert len(tokens) == 248320
    assert [tokens[i] for i in (248044, 248046, 248053, 248054, 248056)] == [
        "<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]


def _apply_template(template: str, messages) -> str:
    """llama.cpp's llama_chat_apply_template with the GGUF's template (Engine.format_prompt)."""
    import ctypes

    from foveate.native import bindings as B

    llama = B.llama
    arr = (llama.llama_chat_message * len(messages))(
        *[llama.llama_chat_message(role=r.encode(), content=c.encode()) for r, c in messages])
    buf = ctypes.create_string_buffer(4096)
    n = llama.llama_chat_apply_template(template.encode(), arr, len(messages), True, buf, len(buf))
    assert 0 < n < len(buf)
    return buf.raw[:n].decode()


def test_template_heuristic_is_chatml_and_the_jinja_thinks():
    user = "<__media__>\nRead."
    assert _apply_template(Q.CHAT_TEMPLATE, [("user", user)]) == (
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    tpl = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        Q.CHAT_TEMPLATE)
    render = lambda **kw: tpl.render(messages=[{"role": "user", "content": user}],
                                     add_generation_prompt=True, **kw)
    assert render() == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert render(enable_thinking=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    a = "qwen35"
    assert kv("general.architecture") == a
    assert kv(f"{a}.block_count") == 5 and kv(f"{a}.nextn_predict_layers") == 1
    assert kv(f"{a}.attention.recurrent_layers") == [True, True, True, False, False]
    assert kv(f"{a}.full_attention_interval") == 4
    assert kv(f"{a}.embedding_length") == 1024 and kv(f"{a}.feed_forward_length") == 3584
    assert kv(f"{a}.attention.head_count") == 8 and kv(f"{a}.attention.head_count_kv") == 2
    assert kv(f"{a}.attention.key_length") == kv(f"{a}.attention.value_length") == 256
    assert kv(f"{a}.rope.dimension_sections") == [11, 11, 10, 0]
    assert kv(f"{a}.rope.dimension_count") == 64 and kv(f"{a}.rope.freq_base") == 1e7
    assert kv(f"{a}.ssm.conv_kernel") == 4 and kv(f"{a}.ssm.state_size") == 128
    assert kv(f"{a}.ssm.group_count") == kv(f"{a}.ssm.time_step_rank") == 16
    assert kv(f"{a}.ssm.inner_size") == 2048 and kv(f"{a}.context_length") == 262144
    tokens = kv("tokenizer.ggml.tokens")
    assert len(tokens) == VOCAB and tokens[kv("tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert kv("tokenizer.chat_template") == Q.CHAT_TEMPLATE
    assert tensors_read(r) == tensors_written(Q.text_tensors(SHAPE, 1, VOCAB))

    r = gguf.GGUFReader(mmproj)
    assert kv("clip.projector_type") == "qwen3vl_merger"
    assert kv("clip.vision.projection_dim") == 1024 and kv("clip.vision.block_count") == 1
    assert kv("clip.vision.is_deepstack_layers") == [False]
    assert kv("clip.vision.image_size") == 768 and kv("clip.vision.spatial_merge_size") == 2
    assert tensors_read(r) == tensors_written(Q.mmproj_tensors(SHAPE, 1))

    sizes = Q.sizes(SHAPE, 1, VOCAB)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_image_tokens():
    # sides rounded to 32 px, 8 .. 4096 tokens, one chunk: a US-letter page at 200 dpi
    assert Q.image_tokens(448, 224) == 14 * 7
    assert Q.image_tokens(1700, 2200) == 53 * 69 == 3657
    assert Q.image_tokens(2550, 3300) == 4032            # 300 dpi: scaled down to <= 4096
    assert Q.image_tokens(100, 60) == 12                 # scaled up to >= 8


def test_pair_reads_a_page(pair, page):
    from foveate import Reader
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=2) as r:
        # the family renders the jinja with thinking off (Family.thinking_off): the empty
        # reasoning block the template writes for enable_thinking=False
        assert r.engine.format_prompt("OCR") == (
            f"<|im_start|>user\n{r.engine.marker}\nOCR<|im_end|>\n<|im_start|>assistant\n"
            "<think>\n\n</think>\n\n")
        st = r.read(page, prompt="OCR", max_tokens=4).stats
    assert st.image_tokens == Q.image_tokens(448, 224) == 98
    assert st.stop_reason in ("max_tokens", "eos")
    assert st.tokens_generated == 4 or st.stop_reason == "eos"
    # <|im_start|> user \n <|vision_start|> [98] <|vision_end|> \n OCR <|im_end|> \n
    # <|im_start|> assistant \n <think> \n \n </think> \n \n (no BOS)
    assert st.prompt_tokens == 1 + 4 + 1 + 1 + 98 + 1 + 1 + 3 + 1 + 1 + 1 + 9 + 1 + (1 + 2 + 1 + 2)
    # merging and fixation: M-RoPE rows (4 positions each), half kept, fixation on the
    # attention layer's KV cells (the DeltaNet layers keep their state)
    eng = Engine(str(model), str(mmproj), n_ctx=4096, threads=2, merge=0.5, fixation=0.05,
                 fixation_k_min=4)
    try:
        seen = []
        eng.image_batch_hook = lambda b: seen.append(b.n_pos)
        n_past, st = eng.prefill_page(load_page(page), prompt="OCR")
        assert st.image_tokens == 98 and st.image_tokens_merged == len(eng.merge_kept()) == 49
        assert seen and all(n == 4 for n in seen)
        eng._decode_one(int(eng.logits().argmax()), n_past)
        assert len(eng.fixation_selection()) == 4
    finally:
        eng.close()
