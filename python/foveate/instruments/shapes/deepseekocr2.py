"""DeepSeek-OCR-2 (deepseek-ai/DeepSeek-OCR-2) as llama.cpp's converter writes it: random
weights, the real tensor names, shapes, storage types and metadata.

* text model: llama.cpp arch `deepseek2-ocr`, the same DeepSeek-V2 MoE decoder as DeepSeek-OCR
  (the converter routes `DeepseekOCR2ForCausalLM` through the same DeepseekV2Model code, and
  the published language_config has the same numbers): taken from deepseek_ocr_shape.
* projector: mtmd projector type `deepseekocr2` ("DeepEncoder V2"): the SAM ViT-B of
  DeepSeek-OCR (its net_3 now 512 -> 896 channels), whose 16x16 (1024 px global view) or
  12x12 (768 px tile) features run through a 24-layer Qwen2-0.5B-shaped encoder (896 wide,
  14 query heads / 2 KV heads of 64, SwiGLU 4864, RMSNorm, NEOX RoPE theta 1e6) together with
  256 / 144 learned query embeddings (`v.resample_query_1024` / `_768`); only the query
  outputs come out, projected linearly 896 -> 1280. The global view gets one learned
  `v.view_seperator` (sic) row after its 256 tokens; tiles get none; there is no image
  newline in this model (clip.cpp loads `v.image_newline` as optional, and DeepSeek-OCR-2's
  checkpoint has none).

Image chunk layout (mtmd): a page up to 768 px on both sides is one chunk of the global view,
256 + 1 = 257 rows (the last is the view separator). A larger page is also cut into a grid of
768 px tiles (2..6 tiles, the aspect ratio closest to the page's), each its own chunk of 144
rows, in row-major order, followed by the global-view chunk; mtmd puts no text between them
and a "\\n" after the last.

Only the tokenizer differs from the real model (a character-level SentencePiece vocab with
DeepSeek's special tokens at their real ids instead of the 129280-entry byte-level BPE), as in
deepseek_ocr_shape.
"""
from __future__ import annotations

from pathlib import Path

from . import deepseek_ocr_shape as v1
from .gguf_specs import (F16, F32, Spec, add_char_tokenizer, add_llm_head, char_vocab,
                         write_pair_files, pair_sizes)

# The real numbers. Sources: deepseek-ai/DeepSeek-OCR-2 config.json (language_config,
# vision_config.width, projector_config; as quoted in public ports, e.g. openvino.genai's
# DeepseekOCR2ConfigTest), the reference encoder deepencoderv2 / qwen2_d2e.py
# (build_qwen2_decoder_as_encoder's defaults, which config.json does not repeat), and
# llama.cpp's converter (conversion/deepseek.py DeepseekOCR2VisionModel) and loader
# (tools/mtmd/clip.cpp, models/deepseekocr2.cpp).
DEEPSEEK_OCR2_SHAPE: dict = {
    # text decoder: language_config, identical to DeepSeek-OCR's (vocab 129280, hidden 1280,
    # 12 layers, 10 heads / 10 KV, dense FFN 6848 in layer 0, 64 routed experts of 896,
    # 6 used, 2 shared); qk_rope_head_dim = 0 and max_position_embeddings = 8192 are
    # assumed to be DeepSeek-OCR's too (guess: the quoted configs omit them)
    **{k: v1.S[k] for k in ("arch", "n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv",
                            "head_dim", "n_ff", "n_layer_dense_lead", "n_expert",
                            "n_expert_used", "n_expert_shared", "n_ff_exp", "n_ctx_train",
                            "rope_theta", "rms_eps")},
    # projector
    "projector_type": "deepseekocr2",
    "image_size": 1024,          # vision_config.image_size: the global view (base_size)
    "patch_size": 16,            # converter default (build_qwen2_decoder_as_encoder has none)
    # SAM ViT-B: vision_config.width.sam_vit_b (width 768, 12 layers, 12 heads, global
    # attention at 2, 5, 8, 11); window 14 and FFN 3072 (mlp_ratio 4) as DeepSeek-OCR's
    **{k: v1.S[k] for k in ("sam_embd", "sam_layers", "sam_heads", "sam_ff", "sam_window",
                            "sam_global_layers", "sam_neck", "sam_net_2")},
    "sam_net_3": 896,            # deepencoderv2 net_3: Conv2d(512, 896) (not 1024 as in v1)
    # Qwen2 encoder: vision_config.width["qwen2-0-5b"].dim = 896; the rest are
    # build_qwen2_decoder_as_encoder's defaults (24 layers, 14 heads, 2 KV heads, 4864),
    # which the converter writes as fixed values
    "enc_embd": 896,
    "enc_layers": 24,
    "enc_heads": 14,
    "enc_heads_kv": 2,
    "enc_ff": 4864,
    "queries_global": 256,       # query_1024: nn.Embedding(256, 896), (1024/16/4)^2
    "queries_tile": 144,         # query_768: nn.Embedding(144, 896), (768/16/4)^2
    "proj_in": 896,              # projector_config.input_dim (linear)
    "proj_out": 1280,            # projector_config.n_embed = the text model's hidden size
    "tile_size": 768,            # image_size (crop) in the reference infer(); clip.cpp's
    "min_tiles": 2,              # preproc_tile_size; dynamic_preprocess min_num / max_num
    "max_tiles": 6,              # (the converter writes 2 and 6)
    "image_mean": [0.5, 0.5, 0.5],   # processor config (guess: DeepSeek-OCR's, as quoted
    "image_std": [0.5, 0.5, 0.5],    # in public ports of DeepSeek-OCR-2)
    "eps": 1e-6,                 # converter: layer_norm_eps default (the Qwen2 RMSNorm's 1e-6)
    "image_tokens_global": 257,  # 256 queries + the view separator
    "image_tokens_tile": 144,
}

SHAPES = {"deepseek-ocr-2": DEEPSEEK_OCR2_SHAPE}
NAME = "foveate-deepseek-ocr-2-shape (random weights)"
CHAT_TEMPLATE = v1.CHAT_TEMPLATE   # what the converter writes for every DeepSeek-OCR arch


def _shape(shape: str) -> dict:
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; this module writes {', '.join(SHAPES)}")
    return SHAPES[shape]


def _depths(layers: int | None) -> tuple[int, int, int]:
    """(text, SAM, Qwen2 encoder) depths: deepseek_ocr_shape's rule (SAM keeps at least 3
    layers, its global-attention layer 2); the encoder has the same 24 layers as v1's CLIP."""
    return v1._depths(layers)


def make_vocab(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """DeepSeek's special tokens at their real ids (BOS 0, EOS 1, PAD 2), characters, byte
    fallback, unused tokens up to the real vocab size (or `vocab`)."""
    s = _shape(shape)
    return char_vocab(v1.SPECIAL, s["n_vocab"] if vocab is None else vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    """deepseek_ocr_shape's text tensors (the same decoder), vocab rows resized."""
    n = len(make_vocab(shape, vocab)[0])
    out = []
    for name, shp, dtype, init in v1.text_tensors(layers):
        if name in ("token_embd.weight", "output.weight"):
            shp = (n, shp[1])
        out.append((name, shp, dtype, init))
    return out


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    s = _shape(shape)
    _, _, n_enc = _depths(layers)
    d, ff = s["enc_embd"], s["enc_ff"]
    d_kv = s["enc_heads_kv"] * (d // s["enc_heads"])          # 2 x 64 = 128
    # SAM: DeepSeek-OCR's (same names, shapes and F32 exceptions), net_3 to 896 channels
    t = []
    for name, shp, dtype, init in v1.mmproj_tensors(layers):
        if not name.startswith("v.sam."):
            continue
        if name == "v.sam.net_3.weight":
            shp = (s["sam_net_3"], s["sam_net_2"], 3, 3)
        t.append((name, shp, dtype, init))
    for i in range(n_enc):
        p = f"v.blk.{i}."
        t += [(p + "attn_q.weight", (d, d), F16, "w"),
              (p + "attn_q.bias", (d,), F32, "zeros"),
              (p + "attn_k.weight", (d_kv, d), F16, "w"),
              (p + "attn_k.bias", (d_kv,), F32, "zeros"),
              (p + "attn_v.weight", (d_kv, d), F16, "w"),
              (p + "attn_v.bias", (d_kv,), F32, "zeros"),
              (p + "attn_out.weight", (d, d), F16, "w"),       # o_proj: no bias in Qwen2
              (p + "ln1.weight", (d,), F32, "ones"),          # input_layernorm (RMS)
              (p + "ln2.weight", (d,), F32, "ones"),          # post_attention_layernorm
              (p + "ffn_gate.weight", (ff, d), F16, "w"),
              (p + "ffn_up.weight", (ff, d), F16, "w"),
              (p + "ffn_down.weight", (d, ff), F16, "w")]
    t += [("v.post_ln.weight", (d,), F32, "ones"),            # qwen2_model.model.model.norm
          # nn.Embedding weights named *.weight, 2-D: the converter keeps them F16
          ("v.resample_query_768.weight", (s["queries_tile"], d), F16, "w"),
          ("v.resample_query_1024.weight", (s["queries_global"], d), F16, "w"),
          ("mm.model.fc.weight", (s["proj_out"], s["proj_in"]), F16, "w"),
          ("mm.model.fc.bias", (s["proj_out"],), F32, "zeros"),
          # model.view_seperator (1280,), unsqueezed by the converter, no .weight suffix: F32
          ("v.view_seperator", (1, s["proj_out"]), F32, "w")]
    return t


def _text_kv(s: dict, n_layer: int, tokens: list[str], types: list[int]):
    import gguf

    def kv(w):
        add_llm_head(w, NAME, n_layer, s)
        w.add_rope_freq_base(s["rope_theta"])   # the converter sets rope_theta = 10000 for OCR
        w.add_layer_norm_rms_eps(s["rms_eps"])
        w.add_expert_used_count(s["n_expert_used"])
        w.add_expert_group_count(1)             # n_group / topk_group
        w.add_expert_group_used_count(1)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_leading_dense_block_count(s["n_layer_dense_lead"])
        w.add_vocab_size(len(tokens))
        w.add_expert_feed_forward_length(s["n_ff_exp"])
        w.add_expert_count(s["n_expert"])
        w.add_expert_shared_count(s["n_expert_shared"])
        # qk_rope_head_dim = 0 as converted; the deepseek2-ocr graph ropes the whole head
        w.add_rope_dimension_count(0)
        add_char_tokenizer(w, tokens, types, bos=v1.BOS, eos=v1.EOS, pad=v1.PAD, add_bos=True)
        w.add_add_eos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(s: dict, n_sam: int, n_enc: int):
    import gguf

    def kv(w):
        w.add_type("mmproj")
        w.add_name(NAME + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_uint32("clip.vision.projection_dim", s["proj_out"])
        w.add_uint32("clip.vision.image_size", s["image_size"])
        w.add_uint32("clip.vision.patch_size", s["patch_size"])
        w.add_uint32("clip.vision.embedding_length", s["enc_embd"])
        w.add_uint32("clip.vision.feed_forward_length", s["enc_ff"])
        w.add_uint32("clip.vision.block_count", n_enc)
        w.add_uint32("clip.vision.attention.head_count", s["enc_heads"])
        w.add_array("clip.vision.image_mean", s["image_mean"])
        w.add_array("clip.vision.image_std", s["image_std"])
        w.add_string("clip.projector_type", s["projector_type"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", s["eps"])
        w.add_bool("clip.use_gelu", True)
        # projector.scale_factor: (1024 // 16) // sqrt(256) = 4, the default: not written
        w.add_uint32("clip.vision.window_size", s["sam_window"])
        w.add_uint32("clip.vision.preproc_min_tiles", s["min_tiles"])
        w.add_uint32("clip.vision.preproc_max_tiles", s["max_tiles"])
        w.add_uint32("clip.vision.sam.block_count", n_sam)
        w.add_uint32("clip.vision.sam.embedding_length", s["sam_embd"])
        w.add_uint32("clip.vision.sam.head_count", s["sam_heads"])
        w.add_uint32("clip.vision.attention.head_count_kv", s["enc_heads_kv"])
    return kv


def _text_parts(shape, layers, vocab_n):
    s = _shape(shape)
    tokens, types = make_vocab(shape, vocab_n)
    return s["arch"], text_tensors(shape, layers, vocab_n), _text_kv(s, _depths(layers)[0],
                                                                     tokens, types)


def _mmproj_parts(shape, layers):
    s = _shape(shape)
    _, n_sam, n_enc = _depths(layers)
    return "clip", mmproj_tensors(shape, layers), _mmproj_kv(s, n_sam, n_enc)


def write_pair(out_dir, shape: str = "deepseek-ocr-2", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """`{shape}-f16.gguf` (text, seed) and `{shape}-mmproj-f16.gguf` (projector, seed + 1)."""
    return write_pair_files(out_dir, shape, _text_parts(shape, layers, vocab),
                            _mmproj_parts(shape, layers), seed)


def sizes(shape: str = "deepseek-ocr-2", layers: int | None = None,
          vocab: int | None = None) -> dict:
    return pair_sizes(_text_parts(shape, layers, vocab), _mmproj_parts(shape, layers))


def image_tokens(width: int, height: int, shape: str = "deepseek-ocr-2") -> list[int]:
    """Rows per mtmd image chunk for a page, from DeepSeek-OCR-2's published preprocessing
    (the reference dynamic_preprocess with min_num 2, max_num 6, image_size 768, crop only
    when a side exceeds 768): [144] * tiles + [257] (tiles first, the global view last)."""
    s = _shape(shape)
    t = s["tile_size"]
    if width <= t and height <= t:
        return [s["image_tokens_global"]]
    aspect = width / height
    ratios = []
    for n in range(s["min_tiles"], s["max_tiles"] + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if s["min_tiles"] <= i * j <= s["max_tiles"] and (i, j) not in ratios:
                    ratios.append((i, j))
    ratios.sort(key=lambda r: r[0] * r[1])
    best, best_diff = (1, 1), float("inf")
    for r in ratios:   # the reference find_closest_aspect_ratio (ties: the larger grid if the
        diff = abs(aspect - r[0] / r[1])   # page covers more than half of it)
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and width * height > 0.5 * t * t * r[0] * r[1]:
            best = r
    return [s["image_tokens_tile"]] * (best[0] * best[1]) + [s["image_tokens_global"]]
