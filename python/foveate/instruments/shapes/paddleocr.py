"""Random-weight GGUF pairs with the exact shapes of PaddleOCR-VL (PaddlePaddle/PaddleOCR-VL,
"PaddleOCR-VL-0.9B"), as llama.cpp's converter (conversion/ernie.py: PaddleOCRModel on
Ernie4_5Model, PaddleOCRVisionModel on MmprojModel; conversion/base.py) writes them.

* text model: llama.cpp arch `paddleocr` (src/models/paddleocr.cpp; hparams and tensors are
  ERNIE-4.5's, src/models/ernie4-5.cpp): the ERNIE-4.5-0.3B decoder, 18 layers of 1024,
  16 query heads of 128 (the query width 2048 is twice n_embd, so `attention.key_length` /
  `value_length` = 128 are written from `head_dim`), 2 KV heads, SwiGLU 3072, no biases,
  untied lm_head. RoPE: rope type LLAMA_ROPE_TYPE_MROPE (llama_model_rope_type lists
  LLM_ARCH_PADDLEOCR with QWEN2VL), sections (t, h, w, extra) = (16, 24, 24, 0) of the 64
  rotary pairs, theta 500000. mtmd therefore uses MTMD_POS_TYPE_MROPE: image tokens get
  (t, y, x) positions, the image advances n_past by max(grid h, grid w).
* projector: mtmd projector type `paddleocr` (tools/mtmd/models/paddleocr.cpp): a NaViT-style
  SigLIP-so400m ViT (27 layers of 1152, 16 heads of 72, GELU MLP 4304, LayerNorm with bias,
  patch 14 as one Conv2d with bias, a learned 27x27 position table bilinearly resized to the
  image grid, plus 2-D RoPE in every layer), `post_layernorm`, then the `mlp_AR` projector:
  LayerNorm(1152, eps 1e-5), 2x2 patches concatenated (4608), Linear 4608->4608 + bias,
  GELU, Linear 4608->1024 + bias. The image is resized (bicubic, aspect kept) to multiples
  of 28 px between min_pixels 112896 and max_pixels 1003520 (mtmd's dyn_size preprocessor,
  the same smart_resize as the HF processor); one image token per 28x28 px.

Converter details kept as converted: `clip.vision.image_size` is int(sqrt(max_pixels)) = 1001
(the converter overwrites the config's 384 with it); the vision eps is the converter's
default 1e-6 (vision_config has `layer_norm_eps`, the converter reads `rms_norm_eps`);
`clip.use_gelu` is set. The SigLIP pooling `head` and the `packing_position_embedding`
(32768 x 1152) of the checkpoint are dropped by the converter, so they are not here.

Image markers: mtmd wraps each image in the text tokens "<|IMAGE_START|>" ... "<|IMAGE_END|>"
(mtmd.cpp, PROJECTOR_TYPE_PADDLEOCR): learned rows of token_embd, *outside* the image chunk.
The image chunk itself is only the merged patch embeddings (h/28 x w/28, row-major), with no
newline / separator rows and no deepstack features. "<|IMAGE_PLACEHOLDER|>" is HF's
placeholder; llama.cpp never emits it.

Only the tokenizer differs from the real model: the real one is ERNIE-4.5's SentencePiece
model (llama.cpp tokenizer model "llama"), here a character-level SentencePiece vocab with
the real ids of <unk>/<s>/</s> (0/1/2) and of the image / video tokens (config.json:
image_token_id 100295, vision_start 101305, vision_end 101306, video_token_id 101307),
padded to the real 103424. The chat template is PaddleOCR-VL's own chat_template.jinja;
llama.cpp's llama_chat_apply_template does not know it (no heuristic matches:
LLM_CHAT_TEMPLATE_UNKNOWN, the call returns -1), so callers that rely on it (foveate's
Engine.format_prompt) fall back to the bare user text.

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

import math
from pathlib import Path

from .gguf_specs import (cut_depths, CONTROL, F16, F32, UNKNOWN, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, pick_shape, write_pair_files, pair_sizes)

ARCH = "paddleocr"
PROJECTOR = "paddleocr"

SHAPES: dict[str, dict] = {
    "paddleocr-vl": {
        "hf": "PaddlePaddle/PaddleOCR-VL",
        # --- text: config.json top level (the ERNIE-4.5-0.3B decoder). Read from
        # huggingface/candle's paddleocr_vl/config.rs defaults, which mirror the published
        # config.json, and a PaddleOCR-VL fixture generator that copies its keys.
        "n_vocab": 103424,       # vocab_size
        "n_embd": 1024,          # hidden_size
        "n_layer": 18,           # num_hidden_layers (llama.cpp: LLM_TYPE_0_3B at 18)
        "n_head": 16,            # num_attention_heads
        "n_head_kv": 2,          # num_key_value_heads
        "head_dim": 128,         # head_dim (not hidden_size / heads = 64)
        "n_ff": 3072,            # intermediate_size
        "n_ctx_train": 131072,   # max_position_embeddings
        "rope_theta": 500000.0,  # rope_theta
        "rms_eps": 1e-5,         # rms_norm_eps
        "mrope_sections": (16, 24, 24, 0),  # rope_scaling.mrope_section, padded to 4
        # tie_word_embeddings false (candle's default; the transformers port defaults to
        # true). Cross-check: untied, the converted pair is ~0.90B parameters, the checkpoint
        # with the dropped head / packing table ~0.96B, matching "0.9B"; tied it would be 0.80B.
        "tied": False,
        # --- vision: vision_config (SigLIP-so400m/14 at 384) and preprocessor_config.json
        "v_embd": 1152,          # vision_config.hidden_size
        "v_layer": 27,           # vision_config.num_hidden_layers
        "v_head": 16,            # vision_config.num_attention_heads
        "v_ff": 4304,            # vision_config.intermediate_size
        "patch": 14,             # vision_config.patch_size
        "merge": 2,              # vision_config.spatial_merge_size (clip.cpp hard-codes 2)
        "v_image_size": 384,     # vision_config.image_size: 27 x 27 = 729 learned positions
        "v_eps": 1e-6,           # converter: hparams.get("rms_norm_eps", 1e-6) -> default
        "min_pixels": 112896,    # preprocessor_config.json min_pixels (= 336^2 = 144 tokens)
        "max_pixels": 1003520,   # preprocessor_config.json max_pixels (= 1280 tokens)
        "image_mean": (0.5, 0.5, 0.5),   # preprocessor_config.json image_mean
        "image_std": (0.5, 0.5, 0.5),    # preprocessor_config.json image_std
        "proj_eps": 1e-5,        # mlp_AR.pre_norm LayerNorm eps (hard-coded in clip.cpp too)
    },
}

# PaddleOCR-VL's chat_template.jinja, verbatim (as copied by a PaddleOCR-VL fixture generator
# that says so; the PaddleOCR-VL processor's structure: cls token, "User: ", image markers,
# text, "\n", "Assistant:\n", eos after an answer).
CHAT_TEMPLATE = """{%- if not add_generation_prompt is defined -%}
    {%- set add_generation_prompt = true -%}
{%- endif -%}
{%- if not cls_token is defined -%}
    {%- set cls_token = "<|begin_of_sentence|>" -%}
{%- endif -%}
{%- if not eos_token is defined -%}
    {%- set eos_token = "</s>" -%}
{%- endif -%}
{{- cls_token -}}
{%- for message in messages -%}
    {%- if message["role"] == "user" -%}
        {{- "User: " -}}
        {%- for content in message["content"] -%}
            {%- if content["type"] == "image" -%}
                {{ "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>" }}
            {%- endif -%}
        {%- endfor -%}
        {%- for content in message["content"] -%}
            {%- if content["type"] == "text" -%}
                {{ content["text"] }}
            {%- endif -%}
        {%- endfor -%}
        {{ "\\n" -}}
    {%- elif message["role"] == "assistant" -%}
        {{- "Assistant:\\n" -}}
        {%- for content in message["content"] -%}
            {%- if content["type"] == "text" -%}
                {{ content["text"] }}
            {%- endif -%}
        {%- endfor -%}
        {{ eos_token -}}
    {%- elif message["role"] == "system" -%}
        {%- for content in message["content"] -%}
            {%- if content["type"] == "text" -%}
                {{ content["text"] + "\\n" }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "Assistant:\\n" -}}
{%- endif -%}
"""

# Real ids: <unk>/<s>/</s> are SentencePiece's 0/1/2 (tokenizer_config bos "<s>", eos "</s>",
# unk "<unk>", pad "<unk>"); the image / video ids are config.json's.
SPECIAL_IDS = {
    "<unk>": 0, "<s>": 1, "</s>": 2,
    "<|IMAGE_PLACEHOLDER|>": 100295,   # image_token_id
    "<|IMAGE_START|>": 101305,         # vision_start_token_id (mtmd's img_beg)
    "<|IMAGE_END|>": 101306,           # vision_end_token_id (mtmd's img_end)
    "<|video_pad|>": 101307,           # video_token_id
}
# Guess: their real ids are in ERNIE's added-token range (~100272), which I could not read;
# here they take the first free ids.
UNPINNED = ["<|begin_of_sentence|>", "<|end_of_sentence|>", "<|image_pad|>"]
SPECIAL = ([("<unk>", UNKNOWN)] + [(t, CONTROL) for t in SPECIAL_IDS if t != "<unk>"]
           + [(t, CONTROL) for t in UNPINNED])
BOS, EOS, PAD = "<s>", "</s>", "<unk>"

NAME = "foveate-{shape}-shape (random weights)"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text, vision) layer counts; `layers` caps both."""
    return cut_depths(layers, S["n_layer"], S["v_layer"])


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: real size and real special-token ids, or padded to `vocab` only
    (then <unk>/<s>/</s> keep 0/1/2 and the other special tokens follow them)."""
    S = _shape(shape)
    n = S["n_vocab"] if vocab is None else vocab
    at = SPECIAL_IDS if n > max(SPECIAL_IDS.values()) else None
    return char_vocab(SPECIAL, n, at=at)


def image_tokens(shape: str, width: int, height: int) -> int:
    """Image tokens of a width x height page, by the published preprocessing (HF
    PaddleOCRVLImageProcessor smart_resize: factor patch * merge = 28, min / max pixels),
    one token per 2x2 patches."""
    S = _shape(shape)
    f = S["patch"] * S["merge"]
    h_bar = max(f, round(height / f) * f)
    w_bar = max(f, round(width / f) * f)
    if h_bar * w_bar > S["max_pixels"]:
        beta = math.sqrt(height * width / S["max_pixels"])
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif h_bar * w_bar < S["min_pixels"]:
        beta = math.sqrt(S["min_pixels"] / (height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    return (h_bar // f) * (w_bar // f)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]
    n_vocab = len(vocab_tokens(shape, vocab)[0])
    d, ff, hd = S["n_embd"], S["n_ff"], S["head_dim"]
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    t: list[Spec] = [("token_embd.weight", (n_vocab, d), F16, "w")]
    for i in range(n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32, "ones"),        # input_layernorm
              (p + "attn_q.weight", (q, d), F16, "w"),             # use_bias false: no biases
              (p + "attn_k.weight", (kv, d), F16, "w"),
              (p + "attn_v.weight", (kv, d), F16, "w"),
              (p + "attn_output.weight", (d, q), F16, "w"),
              (p + "ffn_norm.weight", (d,), F32, "ones"),         # post_attention_layernorm
              (p + "ffn_gate.weight", (ff, d), F16, "w"),
              (p + "ffn_up.weight", (ff, d), F16, "w"),
              (p + "ffn_down.weight", (d, ff), F16, "w")]
    t.append(("output_norm.weight", (d,), F32, "ones"))
    if not S["tied"]:
        t.append(("output.weight", (n_vocab, d), F16, "w"))
    return t


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    vd, vff, p, out = S["v_embd"], S["v_ff"], S["patch"], S["n_embd"]
    merged = vd * S["merge"] ** 2                                     # 4608
    n_pos = (S["v_image_size"] // p) ** 2                             # 729
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),    # forced F16
                     ("v.patch_embd.bias", (vd,), F32, "zeros"),
                     ("v.position_embd.weight", (n_pos, vd), F32, "w")]   # V_ENC_EMBD_POS: F32
    for i in range(n_v):
        b = f"v.blk.{i}."
        for n in ("attn_q", "attn_k", "attn_v"):                      # self_attn.{q,k,v}_proj
            t += [(b + n + ".weight", (vd, vd), F16, "w"), (b + n + ".bias", (vd,), F32, "zeros")]
        t += [(b + "attn_out.weight", (vd, vd), F16, "w"),             # self_attn.out_proj
              (b + "attn_out.bias", (vd,), F32, "zeros"),
              (b + "ln1.weight", (vd,), F32, "ones"),                   # layer_norm1
              (b + "ln1.bias", (vd,), F32, "zeros"),
              (b + "ln2.weight", (vd,), F32, "ones"),                   # layer_norm2
              (b + "ln2.bias", (vd,), F32, "zeros"),
              (b + "ffn_up.weight", (vff, vd), F16, "w"),               # mlp.fc1
              (b + "ffn_up.bias", (vff,), F32, "zeros"),
              (b + "ffn_down.weight", (vd, vff), F16, "w"),             # mlp.fc2
              (b + "ffn_down.bias", (vd,), F32, "zeros")]
    t += [("v.post_ln.weight", (vd,), F32, "ones"),                     # post_layernorm
          ("v.post_ln.bias", (vd,), F32, "zeros"),
          ("mm.input_norm.weight", (vd,), F32, "ones"),                 # mlp_AR.pre_norm
          ("mm.input_norm.bias", (vd,), F32, "zeros"),
          ("mm.1.weight", (merged, merged), F16, "w"),                  # mlp_AR.linear_1
          ("mm.1.bias", (merged,), F32, "zeros"),
          ("mm.2.weight", (out, merged), F16, "w"),                     # mlp_AR.linear_2
          ("mm.2.bias", (out,), F32, "zeros")]
    return t


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_dimension_sections(list(S["mrope_sections"]))
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_key_length(S["head_dim"])
        w.add_value_length(S["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, unk="<unk>", pad=PAD,
                           add_bos=False)                # tokenizer_config add_bos_token false
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
        w.add_vision_image_size(int(math.sqrt(S["max_pixels"])))   # converter: 1001
        w.add_vision_patch_size(S["patch"])
        w.add_vision_embedding_length(S["v_embd"])
        w.add_vision_feed_forward_length(S["v_ff"])
        w.add_vision_block_count(n_v)
        w.add_vision_head_count(S["v_head"])
        w.add_vision_image_mean(list(S["image_mean"]))
        w.add_vision_image_std(list(S["image_std"]))
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_max_pixels(S["max_pixels"])
        w.add_vision_min_pixels(S["min_pixels"])
        w.add_vision_use_gelu(True)
        w.add_vision_attention_layernorm_eps(S["v_eps"])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "paddleocr-vl", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "paddleocr-vl", layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))
