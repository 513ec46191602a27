"""HunyuanOCR (tencent/HunyuanOCR, 1B) as llama.cpp's converter writes it: random weights, the
real tensor names, shapes, storage types and metadata.

* text model: llama.cpp arch `hunyuan_vl` (conversion/hunyuan.py HunyuanVLTextModel): a dense
  24-layer decoder, hidden 1024, 16 query heads / 8 KV heads of 128 (attention width 2048 !=
  hidden), per-head RMS QK-norm, SwiGLU 3584, tied embeddings (no output.weight). XD-RoPE:
  `rope.dimension_sections` [16, 16, 16, 16] makes llama.cpp rope it as M-RoPE (4 position
  streams: sequential, column, row, image index), base 10000 scaled by the NTK alpha 1000
  (llama.cpp: 10000 * 1000^(128/126) ~ 1.12e7).
* projector: mtmd projector type `hunyuanvl`: a 27-layer ViT (1152 wide, 16 heads, GELU FFN
  4304, LayerNorm with biases, patch 16, learned 128x128 position table interpolated to the
  page), then the "perceive" merger: RMSNorm, Conv2d 1152 -> 2304 (2x2, stride 2), GELU,
  Conv2d 2304 -> 4608 (1x1), a learned newline column appended to every merged row (in the
  4608-wide space), Linear 4608 -> 1024, learned begin / end rows around the whole grid, and a
  final RMSNorm over every row.

Image chunk layout (mtmd, pos type HUNYUANVL): the page is resized (aspect kept, sides
multiples of 32, 512^2..2048^2 pixels) to W x H; with w = W/32, h = H/32 the chunk has
1 + h * (w + 1) + 1 rows: [BOI] [row 0: w tokens + newline] ... [row h-1 + newline] [EOI].
All of BOI, the h newlines and EOI are learned rows written by the projector graph (the
projector's `mm.image_begin`, `v.image_newline`, `mm.image_end`, but projected and RMS-normed,
so no output row equals a stored tensor). Around the chunk mtmd puts the text tokens
<｜hy_place▁holder▁no▁100｜> and <｜hy_place▁holder▁no▁101｜>.

Only the tokenizer differs from the real model: a character-level SentencePiece vocab with
HunyuanOCR's special tokens (at their real ids when the vocab has the real size) instead of
the 120818-entry byte-level BPE.
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, write_pair_files, pair_sizes)

# The real numbers. Sources: tencent/HunyuanOCR config.json as mirrored by public ports
# (huggingface/candle models/hunyuan_ocr/config.rs defaults, mlx-vlm's hunyuan_vl test
# config, vLLM's HunYuanVLVisionConfig defaults), the reference modeling code (vLLM
# hunyuan_vision.py: layer biases, the perceive merger), the preprocessing of candle's
# hunyuan-ocr example ("matching PyTorch's HunyuanOCR processor"), and llama.cpp's converter
# (conversion/hunyuan.py) and loader (src/models/hunyuan-vl.cpp, tools/mtmd/clip.cpp,
# models/hunyuanvl.cpp).
HUNYUAN_OCR_SHAPE: dict = {
    # text decoder (config.json root / text fields)
    "arch": "hunyuan_vl",        # gguf MODEL_ARCH.HUNYUAN_VL (llama-arch.cpp "hunyuan_vl")
    "n_vocab": 120818,           # vocab_size
    "n_embd": 1024,              # hidden_size
    "n_layer": 24,               # num_hidden_layers
    "n_head": 16,                # num_attention_heads
    "n_head_kv": 8,              # num_key_value_heads
    "head_dim": 128,             # head_dim (attention_head_dim)
    "n_ff": 3584,                # intermediate_size
    "n_ctx_train": 32768,        # max_position_embeddings
    "rope_theta": 10000.0,       # rope_theta
    "rope_alpha": 1000.0,        # rope_scaling.alpha (type "xdrope")
    "rope_sections": [16, 16, 16, 16],   # rope_scaling.xdrope_section (sum 64 = head_dim / 2)
    "rms_eps": 1e-5,             # rms_norm_eps
    # special token ids: bos_token_id 120000, eod_token_id 120020 (the converter's EOS),
    # pad_token_id -1 (the converter writes no pad); <｜hy_place▁holder▁no▁N｜> = 120018 + N
    # (no.100/101/102 = image start/end/pad 120118/120119/120120, vLLM's HunyuanOCR token
    # table); hy_User 120006 and hy_Assistant 120007 come from the Hunyuan dense tokenizer
    # HunyuanOCR shares (guess: not checked against HunyuanOCR's own tokenizer.json)
    "bos_id": 120000,
    "eos_id": 120020,
    # projector: vision_config
    "projector_type": "hunyuanvl",
    "v_embd": 1152,              # hidden_size
    "v_layers": 27,              # num_hidden_layers
    "v_heads": 16,               # num_attention_heads
    "v_ff": 4304,                # intermediate_size
    "patch_size": 16,            # patch_size
    "max_image_size": 2048,      # max_image_size: the position table is (2048/16)^2 + 1 CLS
                                 # rows; the converter strips the CLS row and writes it as
                                 # clip.vision.image_size (config.json has no image_size)
    "merge": 2,                  # spatial_merge_size
    "out_embd": 1024,            # out_hidden_size = the text hidden size
    "v_eps": 1e-5,               # rms_norm_eps (the ViT's LayerNorms and the merger's RMSNorms)
    # preprocessor_config.json: min_pixels 512*512, max_pixels 2048*2048, CLIP mean / std
    # (from candle's port of the processor; guess that the JSON says the same)
    "min_pixels": 512 * 512,
    "max_pixels": 2048 * 2048,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

SHAPES = {"hunyuan-ocr": HUNYUAN_OCR_SHAPE}
NAME = "foveate-hunyuan-ocr-shape (random weights)"

BOS = "<｜hy_begin▁of▁sentence｜>"
EOS = "<｜hy_place▁holder▁no▁2｜>"      # eod_token_id 120020
USER, ASSISTANT = "<｜hy_User｜>", "<｜hy_Assistant｜>"
SYSTEM_END = "<｜hy_place▁holder▁no▁3｜>"
IMG_START = "<｜hy_place▁holder▁no▁100｜>"   # mtmd's img_beg for this projector
IMG_END = "<｜hy_place▁holder▁no▁101｜>"     # mtmd's img_end
IMG_PAD = "<｜hy_place▁holder▁no▁102｜>"     # HF's placeholder (llama.cpp does not use it)
SPECIAL = [(BOS, CONTROL), ("<｜hy_end▁of▁sentence｜>", CONTROL), ("<｜hy_▁pad▁｜>", CONTROL),
           (USER, CONTROL), (ASSISTANT, CONTROL), (EOS, CONTROL), (SYSTEM_END, CONTROL),
           (IMG_START, CONTROL), (IMG_END, CONTROL), (IMG_PAD, CONTROL), ("<unk>", UNKNOWN)]
REAL_IDS = {BOS: 120000, "<｜hy_end▁of▁sentence｜>": 120001, "<｜hy_▁pad▁｜>": 120002,
            USER: 120006, ASSISTANT: 120007, EOS: 120020, SYSTEM_END: 120021,
            IMG_START: 120118, IMG_END: 120119, IMG_PAD: 120120}

# A reconstruction (HunyuanOCR's own tokenizer_config.json template was not available): the
# layout of ms-swift's HunYuanVL template and llama.cpp's LLM_CHAT_TEMPLATE_HUNYUAN_VL, i.e.
# <｜hy_begin▁of▁sentence｜>[system<｜hy_place▁holder▁no▁3｜>]user<｜hy_User｜>, the
# generation prompt ending in <｜hy_User｜>. llama.cpp detects it as "hunyuan-vl" (it holds
# <｜hy_Assistant｜> and <｜hy_begin▁of▁sentence｜>).
CHAT_TEMPLATE = (
    "<｜hy_begin▁of▁sentence｜>"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}<｜hy_place▁holder▁no▁3｜>"
    "{% elif message['role'] == 'user' %}{{ message['content'] }}<｜hy_User｜>"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}<｜hy_Assistant｜>"
    "{% endif %}{% endfor %}")


def _shape(shape: str) -> dict:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; this module writes {', '.join(SHAPES)}")
    return SHAPES[shape]


def _depths(shape: str, layers: int | None) -> tuple[int, int]:
    s = _shape(shape)
    if layers is None:
        return s["n_layer"], s["v_layers"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return min(layers, s["n_layer"]), min(layers, s["v_layers"])


def make_vocab(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The special tokens at their real ids in a real-size vocab; first (ids 0..10) in a
    reduced one, where the real ids do not fit."""
    s = _shape(shape)
    if vocab is None:
        return char_vocab(SPECIAL, s["n_vocab"], at=REAL_IDS)
    return char_vocab(SPECIAL, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    s = _shape(shape)
    n_layer, _ = _depths(shape, layers)
    n_vocab = len(make_vocab(shape, vocab)[0])
    d, ff, hd = s["n_embd"], s["n_ff"], s["head_dim"]
    dq, dkv = s["n_head"] * hd, s["n_head_kv"] * hd
    t = [("token_embd.weight", (n_vocab, d), F16, "w")]
    for i in range(n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32, "ones"),
              (p + "attn_q.weight", (dq, d), F16, "w"),
              (p + "attn_k.weight", (dkv, d), F16, "w"),
              (p + "attn_v.weight", (dkv, d), F16, "w"),
              (p + "attn_output.weight", (d, dq), F16, "w"),
              (p + "attn_q_norm.weight", (hd,), F32, "ones"),   # query_layernorm
              (p + "attn_k_norm.weight", (hd,), F32, "ones"),   # key_layernorm
              (p + "ffn_norm.weight", (d,), F32, "ones"),
              (p + "ffn_gate.weight", (ff, d), F16, "w"),
              (p + "ffn_up.weight", (ff, d), F16, "w"),
              (p + "ffn_down.weight", (d, ff), F16, "w")]
    t.append(("output_norm.weight", (d,), F32, "ones"))     # tied: no output.weight
    return t


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    s = _shape(shape)
    _, n_v = _depths(shape, layers)
    d, ff, p_, m = s["v_embd"], s["v_ff"], s["patch_size"], s["merge"]
    n_pos = (s["max_image_size"] // p_) ** 2                 # CLS row stripped: 16384
    t = [("v.patch_embd.weight", (d, 3, p_, p_), F16, "w"),  # forced F16 (patch_embd)
         ("v.patch_embd.bias", (d,), F32, "zeros"),
         ("v.position_embd.weight", (n_pos, d), F32, "w")]   # V_ENC_EMBD_POS: always F32
    for i in range(n_v):
        b = f"v.blk.{i}."
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t += [(b + n + ".weight", (d, d), F16, "w"), (b + n + ".bias", (d,), F32, "zeros")]
        t += [(b + "ln1.weight", (d,), F32, "ones"), (b + "ln1.bias", (d,), F32, "zeros"),
              (b + "ln2.weight", (d,), F32, "ones"), (b + "ln2.bias", (d,), F32, "zeros"),
              (b + "ffn_up.weight", (ff, d), F16, "w"),       # mlp.dense_h_to_4h
              (b + "ffn_up.bias", (ff,), F32, "zeros"),
              (b + "ffn_down.weight", (d, ff), F16, "w"),     # mlp.dense_4h_to_h
              (b + "ffn_down.bias", (d,), F32, "zeros")]
    d2, d4, out = 2 * d, 4 * d, s["out_embd"]
    t += [("mm.pre_norm.weight", (d,), F32, "ones"),          # perceive.before_rms
          ("mm.0.weight", (d2, d, m, m), F16, "w"),          # perceive.proj.0 (conv, F16)
          ("mm.0.bias", (d2,), F32, "zeros"),
          ("mm.2.weight", (d4, d2, 1, 1), F16, "w"),         # perceive.proj.2 (conv, F16)
          ("mm.2.bias", (d4,), F32, "zeros"),
          ("mm.model.fc.weight", (out, d4), F16, "w"),       # perceive.mlp
          ("mm.model.fc.bias", (out,), F32, "zeros"),
          ("mm.post_norm.weight", (out,), F32, "ones"),      # perceive.after_rms
          ("v.image_newline", (d4,), F32, "w"),              # perceive.image_newline (4608)
          ("mm.image_begin", (out,), F32, "w"),              # perceive.image_begin
          ("mm.image_end", (out,), F32, "w"),                # perceive.image_end
          ("v.view_seperator", (out,), F32, "w")]            # perceive.image_sep (unused)
    return t


def _text_kv(s: dict, n_layer: int, tokens: list[str], types: list[int]):
    import gguf

    a = s["arch"]

    def kv(w):
        add_llm_head(w, NAME, n_layer, s)
        # rope.freq_base: written three times by the converter, the last (HunyuanVL's) wins:
        # the unscaled rope_theta; llama.cpp applies the alpha itself
        w.add_rope_freq_base(s["rope_theta"])
        w.add_layer_norm_rms_eps(s["rms_eps"])
        w.add_key_length(s["head_dim"])
        w.add_value_length(s["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
        w.add_rope_scaling_factor(1.0)
        w.add_float32(f"{a}.rope.scaling.alpha", s["rope_alpha"])
        w.add_rope_scaling_orig_ctx_len(s["n_ctx_train"])
        w.add_rope_dimension_sections(s["rope_sections"])
        # the template writes BOS itself; HunyuanOCR's tokenizer adds none (guess)
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(s: dict, n_v: int):
    import gguf

    def kv(w):
        w.add_type("mmproj")
        w.add_name(NAME + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_uint32("clip.vision.projection_dim", s["n_embd"])
        w.add_uint32("clip.vision.image_size", s["max_image_size"])
        w.add_uint32("clip.vision.patch_size", s["patch_size"])
        w.add_uint32("clip.vision.embedding_length", s["v_embd"])
        w.add_uint32("clip.vision.feed_forward_length", s["v_ff"])
        w.add_uint32("clip.vision.block_count", n_v)
        w.add_uint32("clip.vision.attention.head_count", s["v_heads"])
        w.add_array("clip.vision.image_mean", s["image_mean"])
        w.add_array("clip.vision.image_std", s["image_std"])
        w.add_string("clip.projector_type", s["projector_type"])
        w.add_bool("clip.use_gelu", True)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", s["v_eps"])
        w.add_uint32("clip.vision.spatial_merge_size", s["merge"])
        w.add_uint32("clip.vision.image_min_pixels", s["min_pixels"])
        w.add_uint32("clip.vision.image_max_pixels", s["max_pixels"])
    return kv


def _text_parts(shape, layers, vocab):
    s = _shape(shape)
    tokens, types = make_vocab(shape, vocab)
    return s["arch"], text_tensors(shape, layers, vocab), _text_kv(s, _depths(shape, layers)[0],
                                                                   tokens, types)


def _mmproj_parts(shape, layers):
    s = _shape(shape)
    return "clip", mmproj_tensors(shape, layers), _mmproj_kv(s, _depths(shape, layers)[1])


def write_pair(out_dir, shape: str = "hunyuan-ocr", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """`{shape}-f16.gguf` (text, seed) and `{shape}-mmproj-f16.gguf` (projector, seed + 1)."""
    return write_pair_files(out_dir, shape, _text_parts(shape, layers, vocab),
                            _mmproj_parts(shape, layers), seed)


def sizes(shape: str = "hunyuan-ocr", layers: int | None = None,
          vocab: int | None = None) -> dict:
    return pair_sizes(_text_parts(shape, layers, vocab), _mmproj_parts(shape, layers))


def resized(width: int, height: int, shape: str = "hunyuan-ocr") -> tuple[int, int]:
    """The processor's smart_resize: sides rounded to multiples of patch x merge (32), then
    scaled into [min_pixels, max_pixels] keeping the aspect ratio (floor when shrinking,
    ceil when growing)."""
    import math

    s = _shape(shape)
    f = s["patch_size"] * s["merge"]
    w, h = max(f, round(width / f) * f), max(f, round(height / f) * f)
    if w * h > s["max_pixels"]:
        beta = math.sqrt(width * height / s["max_pixels"])
        w, h = max(f, math.floor(width / beta / f) * f), max(f, math.floor(height / beta / f) * f)
    elif w * h < s["min_pixels"]:
        beta = math.sqrt(s["min_pixels"] / (width * height))
        w, h = math.ceil(width * beta / f) * f, math.ceil(height * beta / f) * f
    return w, h


def image_tokens(width: int, height: int, shape: str = "hunyuan-ocr") -> int:
    """Rows of the page's one image chunk: BOI + h rows of (w + newline) + EOI."""
    s = _shape(shape)
    w, h = resized(width, height, shape)
    f = s["patch_size"] * s["merge"]
    return 1 + (h // f) * (w // f + 1) + 1
