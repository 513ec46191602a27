"""Random-weight GGUF pairs with the exact shapes of GLM-OCR (zai-org/GLM-OCR) and GLM-4.1V
(zai-org/GLM-4.1V-9B-Thinking), as llama.cpp's converter (conversion/glm.py: Glm4Model,
GlmOCRModel; conversion/qwen3vl.py: Glm4VVisionModel on Qwen3VLVisionModel; conversion/base.py)
writes them. The MoE variant (GLM-4.5V, arch glm4moe) is not covered.

* text model: llama.cpp arch `glm4` (src/models/glm4.cpp): the GLM-4 decoder, pre- and
  post-norms around attention and FFN (attn_norm, post_attention_norm, ffn_norm,
  post_ffw_norm), the FFN's gate and up stored fused as one `ffn_up` of 2 x n_ff, GQA.
  RoPE: llama_model_rope_type gives LLAMA_ROPE_TYPE_MROPE when `glm4.rope.dimension_sections`
  is set (hparams.use_mrope()), else NORM; `rope.dimension_count` = head_dim x
  partial_rotary_factor.
  - GLM-OCR: 16 layers of 1536, 16 heads of 128 (head_dim is given: the query width 2048 is
    not n_embd), 8 KV heads, no biases, SwiGLU 4608, plus 1 NextN/MTP layer (block_count 17,
    `glm4.nextn_predict_layers` 1; llama.cpp loads blk.16 with TENSOR_SKIP, its eh_proj /
    enorm / hnorm / embed_tokens / shared_head tensors are kept). Full rotary (factor 1.0,
    128 dims), theta 10000.
  - GLM-4.1V-9B: 40 layers of 4096, 32 heads of 128, 2 KV heads, q/k/v biases, SwiGLU 13696,
    rotary over half the head (factor 0.5, 64 dims), theta 10000.
  Both configs carry `mrope_section` in their rope parameters, and Glm4Model.__init__ turns
  `use_mrope` on whenever it is there (GlmOCRModel's class attribute `use_mrope = False` is
  overwritten by that instance attribute), while TextModel.set_gguf_parameters writes the
  sections regardless: so *both* convert with `glm4.rope.dimension_sections` (GLM-OCR
  (16, 24, 24, 0), GLM-4.1V (8, 12, 12, 0)), both run with M-RoPE, and mtmd gives both
  MTMD_POS_TYPE_MROPE positions (image tokens (t, y, x); the image advances n_past by
  max(grid h, grid w)).
* projector: mtmd projector type `glm4v` (tools/mtmd/models/glm4v.cpp): patch 14 as the HF
  Conv3d split into two Conv2d kernels (`v.patch_embd.weight` / `.weight.1`) + bias, a ViT
  with RMSNorm, fused qkv, SwiGLU MLP and 2-D RoPE (theta 10000), `post_layernorm`, then the
  2x2 `downsample` Conv2d (`mm.patch_merger`, vision width -> text width, with bias), the
  merger: Linear (`mm.model.fc`), LayerNorm (`mm.post_norm`), GELU, SwiGLU
  (`mm.gate` / `mm.up` / `mm.down`).
  - GLM-OCR (CogViT): 24 layers of 1024, 16 heads of 64, qkv / proj / MLP biases, per-head
    q/k RMSNorm (`attn_q_norm` / `attn_k_norm` of 64), MLP 4096, *no* learned position
    table and no post-conv norm; merger SwiGLU width out_hidden_size x in_channels = 4608.
  - GLM-4.1V: 24 layers of 1536, 12 heads of 128, no biases, MLP out_hidden_size = 4096,
    a learned 24x24 position table (`v.position_embd`, bicubically resized), the post-conv
    RMSNorm (`v.norm_embd`); merger SwiGLU 13696.
  Images: clip.cpp sets n_merge 2 and a token budget of 8..4096 tokens (min / max pixels
  8 x 784 / 4096 x 784), ignoring the processor's; mtmd's dyn_size preprocessor resizes
  (bicubic, aspect kept) to multiples of 28 px; one image token per 28x28 px.

Converter quirks kept as converted: `clip.vision.feed_forward_length` is vision_config's
`intermediate_size` (GLM-OCR 4096 = its MLP; GLM-4.1V 13696 = the *merger's* width, its block
MLP is 4096); clip.cpp sizes everything from the tensors. No spatial_merge_size key (clip.cpp
defaults n_merge to 2), `clip.use_silu` from hidden_act "silu", vision eps rms_norm_eps 1e-5.

Image markers: mtmd wraps each image in the text tokens "<|begin_of_image|>" ...
"<|end_of_image|>" (mtmd.cpp, PROJECTOR_TYPE_GLM4V): control tokens of the LLM vocab
(learned rows of token_embd), *outside* the image chunk. The image chunk is only the merged
patch embeddings (h/28 x w/28, row-major), with no newline / separator rows and no deepstack.
"<|image|>" is HF's placeholder; llama.cpp never emits it.

Only the tokenizer differs from the real models: the real ones are byte-level BPE (`gpt2`,
pre `glm4`); here a character-level SentencePiece vocab with GLM's special tokens at their
real ids, padded to the real vocab size. The converter's special ids are kept: bos = eos =
unk = pad = <|endoftext|>, eot = <|user|>. The chat template is GLM-4.1V-9B-Thinking's own
(for GLM-OCR a reconstruction, see CHAT_TEMPLATE); llama.cpp detects it by "[gMASK]<sop>" as
LLM_CHAT_TEMPLATE_CHATGLM_4: "[gMASK]<sop><|user|>\\n{content}<|assistant|>\\n".

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (CONTROL, F16, F32, Spec, add_char_tokenizer, add_llm_head, char_vocab,
                         pick_shape, write_pair_files, pair_sizes)

ARCH = "glm4"
PROJECTOR = "glm4v"

# OpenAI CLIP mean / std: GLM-OCR's preprocessor_config.json (Glm46VImageProcessor); GLM-4.1V's
# Glm4vImageProcessor uses the same (its default; assumed, not read from its file).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SHAPES: dict[str, dict] = {
    "glm-ocr": {
        "hf": "zai-org/GLM-OCR",
        # --- text_config of config.json (as fetched from the hub in a public transcript);
        # checked against the checkpoint: 1,325,258,240 parameters in 526 tensors
        # (zhutao100/GLM-OCR-Swift docs/GLM-OCR_model.md), which these numbers give exactly,
        # with embed_tokens and shared_head.head present in the MTP layer.
        "n_vocab": 59392,        # vocab_size
        "n_embd": 1536,          # hidden_size
        "n_layer": 16,           # num_hidden_layers
        "n_nextn": 1,            # num_nextn_predict_layers (block_count = 17)
        "n_head": 16,            # num_attention_heads
        "n_head_kv": 8,          # num_key_value_heads
        "head_dim": 128,         # head_dim (given: not hidden_size / heads = 96)
        "n_ff": 4608,            # intermediate_size
        "n_ctx_train": 131072,   # max_position_embeddings
        "rope_theta": 10000.0,   # rope_parameters.rope_theta
        "partial_rotary": 1.0,   # rope_parameters.partial_rotary_factor -> 128 rotary dims
        "mrope_sections": (16, 24, 24, 0),  # rope_parameters.mrope_section, padded to 4
        "rms_eps": 1e-5,         # rms_norm_eps
        "qkv_bias": False,       # attention_bias false (GlmOcrTextAttention: bias=False)
        "tied": False,           # tie_word_embeddings false
        # --- vision_config (glm_ocr_vision) and preprocessor_config.json
        "v_embd": 1024,          # hidden_size
        "v_layer": 24,           # depth
        "v_head": 16,            # num_heads (head 64)
        "v_ff": 4096,            # intermediate_size (GlmOcrVisionMlp uses it)
        "v_ff_key": 4096,        # what the converter writes as feed_forward_length
        "out_hidden": 1536,      # out_hidden_size (= text hidden_size)
        "merger_ff": 4608,       # merger context_dim = out_hidden_size x in_channels (3)
        "patch": 14,             # patch_size (temporal_patch_size 2: two kernels)
        "merge": 2,              # spatial_merge_size
        "image_size": 336,       # image_size
        "v_bias": True,          # attention_bias true: qkv, proj and MLP biases
        "qk_norm": True,         # GlmOcrVisionAttention q_norm / k_norm (per head)
        "pos_embd": False,       # GlmOcrVisionModel deletes embeddings ...
        "post_conv_norm": False,  # ... and post_conv_layernorm
        "v_eps": 1e-5,           # vision_config.rms_norm_eps
        "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD,
        "params": 1_325_258_240,  # the checkpoint's (text + MTP + vision)
        "hf_tensors": 526,
    },
    "glm-4.1v-9b": {
        "hf": "zai-org/GLM-4.1V-9B-Thinking",
        # --- text: transformers' Glm4vTextConfig defaults, documented as GLM-4.1V-9B-Thinking's
        "n_vocab": 151552,       # vocab_size
        "n_embd": 4096,          # hidden_size
        "n_layer": 40,           # num_hidden_layers (llama.cpp: LLM_TYPE_9B at 40)
        "n_nextn": 0,
        "n_head": 32,            # num_attention_heads (head 128)
        "n_head_kv": 2,          # num_key_value_heads
        "head_dim": None,        # not in the config: no attention.key_length written
        "n_ff": 13696,           # intermediate_size
        "n_ctx_train": 65536,    # max_position_embeddings: guess from memory of config.json
                                 # (transformers' default is 32768)
        "rope_theta": 10000.0,   # rope_theta
        "partial_rotary": 0.5,   # partial_rotary_factor -> 64 rotary dims
        "mrope_sections": (8, 12, 12, 0),  # rope_scaling.mrope_section, padded to 4
        "rms_eps": 1e-5,         # rms_norm_eps
        "qkv_bias": True,        # Glm4vTextAttention: q/k/v bias=True
        "tied": False,           # tie_word_embeddings false
        # --- vision: Glm4vVisionConfig defaults (documented as GLM-4.1V-9B-Thinking's)
        "v_embd": 1536,          # hidden_size
        "v_layer": 24,           # depth
        "v_head": 12,            # num_heads (head 128)
        "v_ff": 4096,            # Glm4VisionMlp width = out_hidden_size
        "v_ff_key": 13696,       # intermediate_size: the converter's feed_forward_length
        "out_hidden": 4096,      # out_hidden_size
        "merger_ff": 13696,      # merger context_dim = intermediate_size
        "patch": 14,             # patch_size
        "merge": 2,              # spatial_merge_size
        "image_size": 336,       # image_size: 24 x 24 = 576 learned positions
        "v_bias": False,         # attention_bias false; proj and MLP have no bias
        "qk_norm": False,
        "pos_embd": True,        # embeddings.position_embedding
        "post_conv_norm": True,  # post_conv_layernorm (RMSNorm)
        "v_eps": 1e-5,           # rms_norm_eps
        "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD,
        "params": None,          # not checked against a published count
        "hf_tensors": None,
    },
}

# GLM-4.1V-9B-Thinking's chat_template (tokenizer_config.json), verbatim as quoted in a public
# renderer-validation record. For GLM-OCR this is a reconstruction: GLM-OCR ships a
# GLM-4.6V-style template (same [gMASK]<sop>, role tokens and image markup, plus tool and
# /nothink handling) that I could not retrieve; llama.cpp formats both the same way.
CHAT_TEMPLATE = (
    "[gMASK]<sop>\n{%- for msg in messages %}\n    {%- if msg.role == 'system' %}\n<|system|>\n"
    "{{ msg.content }}\n    {%- elif msg.role == 'user' %}\n<|user|>{{ '\\n' }}\n\n"
    "        {%- if msg.content is string %}\n{{ msg.content }}\n        {%- else %}\n"
    "            {%- for item in msg.content %}\n"
    "                {%- if item.type == 'video' or 'video' in item %}\n"
    "<|begin_of_video|><|video|><|end_of_video|>\n"
    "                {%- elif item.type == 'image' or 'image' in item %}\n"
    "<|begin_of_image|><|image|><|end_of_image|>\n"
    "                {%- elif item.type == 'text' %}\n{{ item.text }}\n"
    "                {%- endif %}\n            {%- endfor %}\n        {%- endif %}\n"
    "    {%- elif msg.role == 'assistant' %}\n        {%- if msg.metadata %}\n"
    "<|assistant|>{{ msg.metadata }}\n{{ msg.content }}\n        {%- else %}\n"
    "<|assistant|>\n{{ msg.content }}\n        {%- endif %}\n    {%- endif %}\n"
    "{%- endfor %}\n{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# GLM-4's added tokens in their fixed order from <|endoftext|>. GLM-4.1V: 151329.. (config:
# image_start 151339, image_end 151340, video_start 151341, video_end 151342, image 151343,
# video 151344; <|endoftext|> 151329 / <|user|> 151336 / <|observation|> 151338 are vLLM's
# stop ids). GLM-OCR: 59246.. in the same order (config: eos [59246 <|endoftext|>,
# 59253 <|user|>], image_start 59256, image_end 57, video_start 58, video_end 59 all fall
# where that order puts them; the ids in between are inferred from it), <|image|> 59280 and
# <|video|> 59281 (config image_token_id / video_token_id).
_ORDER = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
          "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>",
          "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>"]
SPECIAL_IDS = {
    "glm-ocr": {**{t: 59246 + i for i, t in enumerate(_ORDER)},
                "<|image|>": 59280, "<|video|>": 59281},
    "glm-4.1v-9b": {**{t: 151329 + i for i, t in enumerate(_ORDER)},
                    "<|image|>": 151343, "<|video|>": 151344},
}
EOS = BOS = UNK = PAD = "<|endoftext|>"   # conversion/glm.py Glm4Model.set_vocab
EOT = "<|user|>"

NAME = "foveate-{shape}-shape (random weights)"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text decoder layers without the NextN ones, vision layers); `layers` caps both. The
    NextN layer is always kept (block_count = text layers + n_nextn)."""
    if layers is None:
        return S["n_layer"], S["v_layer"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return min(layers, S["n_layer"]), min(layers, S["v_layer"])


def head_dim(S: dict) -> int:
    return S["head_dim"] or S["n_embd"] // S["n_head"]


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: real size and real special-token ids, or padded to `vocab` only
    (then the special tokens come first, wherever the real ids do not fit)."""
    S = _shape(shape)
    ids = SPECIAL_IDS[shape]
    n = S["n_vocab"] if vocab is None else vocab
    at = ids if n > max(ids.values()) else None
    return char_vocab([(t, CONTROL) for t in ids], n, at=at)


def image_tokens(shape: str, width: int, height: int) -> int:
    """Image tokens of a width x height page by llama.cpp's rules for glm4v: multiples of
    patch x merge = 28 px (round), kept within clip.cpp's 8..4096-token budget (floor /
    ceil rescale, as smart_resize), one token per 28x28 px."""
    import math

    S = _shape(shape)
    f = S["patch"] * S["merge"]
    lo, hi = 8 * f * f, 4096 * f * f
    h_bar = max(f, round(height / f) * f)
    w_bar = max(f, round(width / f) * f)
    if h_bar * w_bar > hi:
        beta = math.sqrt(height * width / hi)
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif h_bar * w_bar < lo:
        beta = math.sqrt(lo / (height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    return (h_bar // f) * (w_bar // f)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]
    n_vocab = len(vocab_tokens(shape, vocab)[0])
    d, ff, hd = S["n_embd"], S["n_ff"], head_dim(S)
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    t: list[Spec] = [("token_embd.weight", (n_vocab, d), F16, "w")]
    for i in range(n_layer + S["n_nextn"]):
        p = f"blk.{i}."
        t.append((p + "attn_norm.weight", (d,), F32, "ones"))           # input_layernorm
        for n, width in (("attn_q", q), ("attn_k", kv), ("attn_v", kv)):
            t.append((p + n + ".weight", (width, d), F16, "w"))
            if S["qkv_bias"]:
                t.append((p + n + ".bias", (width,), F32, "zeros"))
        t += [(p + "attn_output.weight", (d, q), F16, "w"),             # o_proj: no bias
              (p + "post_attention_norm.weight", (d,), F32, "ones"),    # post_self_attn_layernorm
              (p + "ffn_norm.weight", (d,), F32, "ones"),               # post_attention_layernorm
              (p + "ffn_up.weight", (2 * ff, d), F16, "w"),             # mlp.gate_up_proj, fused
              (p + "ffn_down.weight", (d, ff), F16, "w"),
              (p + "post_ffw_norm.weight", (d,), F32, "ones")]          # post_mlp_layernorm
        if i >= n_layer:                                                # the NextN / MTP layer
            t += [(p + "nextn.eh_proj.weight", (d, 2 * d), F16, "w"),
                  (p + "nextn.enorm.weight", (d,), F32, "ones"),
                  (p + "nextn.hnorm.weight", (d,), F32, "ones"),
                  (p + "nextn.embed_tokens.weight", (n_vocab, d), F16, "w"),
                  (p + "nextn.shared_head_head.weight", (n_vocab, d), F16, "w"),
                  (p + "nextn.shared_head_norm.weight", (d,), F32, "ones")]
    t.append(("output_norm.weight", (d,), F32, "ones"))
    if not S["tied"]:
        t.append(("output.weight", (n_vocab, d), F16, "w"))
    return t


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    vd, vff, p, out, mff = S["v_embd"], S["v_ff"], S["patch"], S["out_hidden"], S["merger_ff"]
    vhd = vd // S["v_head"]
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),     # Conv3d frame 0
                     ("v.patch_embd.weight.1", (vd, 3, p, p), F16, "w"),   # frame 1 (forced F16)
                     ("v.patch_embd.bias", (vd,), F32, "zeros")]
    if S["post_conv_norm"]:
        t.append(("v.norm_embd.weight", (vd,), F32, "ones"))              # post_conv_layernorm
    if S["pos_embd"]:
        n_pos = (S["image_size"] // p) ** 2
        t.append(("v.position_embd.weight", (n_pos, vd), F32, "w"))       # V_ENC_EMBD_POS: F32
    for i in range(n_v):
        b = f"v.blk.{i}."
        t += [(b + "ln1.weight", (vd,), F32, "ones"),                     # norm1 (RMSNorm)
              (b + "ln2.weight", (vd,), F32, "ones"),                     # norm2
              (b + "attn_qkv.weight", (3 * vd, vd), F16, "w")]
        if S["v_bias"]:
            t.append((b + "attn_qkv.bias", (3 * vd,), F32, "zeros"))
        t.append((b + "attn_out.weight", (vd, vd), F16, "w"))             # attn.proj
        if S["v_bias"]:
            t.append((b + "attn_out.bias", (vd,), F32, "zeros"))
        if S["qk_norm"]:
            t += [(b + "attn_q_norm.weight", (vhd,), F32, "ones"),
                  (b + "attn_k_norm.weight", (vhd,), F32, "ones")]
        for n, shp in (("ffn_gate", (vff, vd)), ("ffn_up", (vff, vd)), ("ffn_down", (vd, vff))):
            t.append((b + n + ".weight", shp, F16, "w"))
            if S["v_bias"]:
                t.append((b + n + ".bias", (shp[0],), F32, "zeros"))
    t += [("v.post_ln.weight", (vd,), F32, "ones"),                       # post_layernorm
          ("mm.patch_merger.weight", (out, vd, S["merge"], S["merge"]), F16, "w"),  # downsample
          ("mm.patch_merger.bias", (out,), F32, "zeros"),
          ("mm.model.fc.weight", (out, out), F16, "w"),                   # merger.proj (no bias)
          ("mm.post_norm.weight", (out,), F32, "ones"),                   # post_projection_norm
          ("mm.post_norm.bias", (out,), F32, "zeros"),
          ("mm.gate.weight", (mff, out), F16, "w"),                       # merger.gate_proj
          ("mm.up.weight", (mff, out), F16, "w"),                         # merger.up_proj
          ("mm.down.weight", (out, mff), F16, "w")]                       # merger.down_proj
    return t


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        add_llm_head(w, NAME.format(shape=shape), n_layer + S["n_nextn"], S)
        w.add_rope_dimension_sections(list(S["mrope_sections"]))
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        if S["head_dim"]:
            w.add_key_length(S["head_dim"])
            w.add_value_length(S["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_rope_dimension_count(int(head_dim(S) * S["partial_rotary"]))
        if S["n_nextn"]:
            w.add_nextn_predict_layers(S["n_nextn"])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, unk=UNK, pad=PAD, add_bos=False)
        w.add_eot_token_id(tokens.index(EOT))
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, n_v: int):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_clip_has_vision_encoder(True)
        w.add_vision_projection_dim(S["n_embd"])
        w.add_vision_image_size(S["image_size"])
        w.add_vision_patch_size(S["patch"])
        w.add_vision_embedding_length(S["v_embd"])
        w.add_vision_feed_forward_length(S["v_ff_key"])   # converter quirk, see the docstring
        w.add_vision_block_count(n_v)
        w.add_vision_head_count(S["v_head"])
        w.add_vision_image_mean(list(S["image_mean"]))
        w.add_vision_image_std(list(S["image_std"]))
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_use_silu(True)                        # hidden_act "silu"
        w.add_vision_attention_layernorm_eps(S["v_eps"])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "glm-ocr", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "glm-ocr", layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))
