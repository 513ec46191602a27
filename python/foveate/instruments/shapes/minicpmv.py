"""MiniCPM-V 4.6 (openbmb/MiniCPM-V-4.6, `MiniCPMV4_6ForConditionalGeneration`): random weights,
real shapes, as llama.cpp's converter writes it (conversion/minicpm.py registers the one HF
architecture twice: MiniCPMV4_6TextModel on qwen.py's Qwen3_5TextModel for the text GGUF,
MiniCPMV4_6VisionModel for the mmproj).

* text GGUF: LLM arch `qwen35` (src/models/qwen35.cpp), the Qwen3.5-0.8B hybrid: 24 layers of
  1024 in a 3 : 1 pattern, 18 gated-delta-net ("linear attention") layers (fused qkv 6144 =
  16 key heads x 128 x 2 + 16 value heads x 128, a z gate, a 4-tap causal conv over the 6144
  channels, per-head decay `ssm_a` / `ssm_dt`, beta / alpha projections, a gated RMSNorm over
  128, out 2048 -> 1024) and 6 full-attention layers (every 4th: 8 query heads of 256 with an
  output gate, so q is 2 x 2048 wide, 2 KV heads, per-head q/k RMSNorm), each with a
  post-attention norm and a SwiGLU FFN 3584; interleaved M-RoPE (IMROPE) on a quarter of each
  head (64 dims, sections 11 / 11 / 10), theta 1e7; tied embeddings (no output.weight):
  320 tensors, as qwen35.py lists them (its decoder_tensors, with this vocab and no MTP
  block).
* mmproj GGUF: projector `minicpmv4_6` (tools/mtmd/models/minicpmv.cpp
  clip_graph_minicpmv4_6): a SigLIP ViT (patch 14, 27 layers of 1152, 16 heads, GELU-tanh FFN
  4304, LayerNorm with biases) with a 70 x 70 learned position table addressed by bucket;
  after layer `insert_layer_id` (6) the "ViT merger": windowed self-attention over 2 x 2
  windows, then 2 x 2 patches concatenated (4608) -> LayerNorm -> MLP 4608 -> 17216 -> 1152
  (+ the windows' mean); the remaining 20 layers run on the 4x fewer rows; post LayerNorm;
  then the final merger: another 2 x 2 concat (4608) -> LayerNorm -> Linear 4608 -> 4608 ->
  GELU -> Linear 4608 -> 1024 (`mm.input_norm`, `mm.up`, `mm.down`). Every image chunk is
  (W/14) x (H/14) / 16 rows (`clip.vision.projector.scale_factor` 4: "16x" downsampling):
  459 tensors.

mtmd (mtmd.cpp PROJECTOR_TYPE_MINICPMV4_6, mtmd-image.cpp mtmd_image_preprocessor_minicpmv,
the llava-uhd slicing of MiniCPM-V with max 9 slices): a page no side of which exceeds 448 px
is one 448 x 448 chunk (64 rows); a larger page becomes an overview (area ~448^2, sides
multiples of 56, aspect kept) and a grid of up to 9 slices chosen by aspect ratio, each its
own chunk of (448-ish)^2 / 196 / 16 rows. Between the chunks mtmd writes *text* tokens:
<image> overview </image>, then <slice> slice </slice> per slice and "\n" between slice rows
(MiniCPM-V 2.6's template). No learned marker rows inside a chunk. Positions: the text model
is IMROPE, so mtmd uses M-RoPE positions (pos type MROPE) with each chunk a 1 x N row.

Only the tokenizer differs from the real model: a character-level SentencePiece vocab with
Qwen3.5's special tokens at their real ids and MiniCPM-V's image tokens, padded to the real
248094, instead of the byte-level BPE.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import qwen35
from .gguf_specs import (CONTROL, F16, F32, QWEN_NOT_SPECIAL, USER, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, layer_norm, linears, pick_shape, vit_blocks,
                         write_pair_files, pair_sizes)

# The real numbers. Sources: openbmb/MiniCPM-V-4.6's config.json as restated by TensorRT-LLM's
# MiniCPM-V 4.6 config test ("a faithful, minimal config.json": text_config, vision_config,
# insert_layer_id, image_token_id, video_token_id, tie_word_embeddings), the vocab size and
# EOS ids in a public MiniCPM-V 4.6 engine (lvyufeng/minicpm-v-4.6-orangepi session.py:
# VOCAB_SIZE 248094, EOS 248044 / 248046, 3 linear : 1 full layer types), transformers'
# MiniCPMV4_6 configuration / modeling / image processor (window_kernel_size 2 x 2, merger
# sizes, scale_resolution 448, max_slice_nums 9, image mean / std 0.5), and llama.cpp's
# converter and loaders in this tree.
MINICPM_V_46: dict = {
    # --- text decoder: text_config (qwen3_5_text) -> LLM arch qwen35
    "arch": "qwen35",
    "n_vocab": 248094,           # text_config.vocab_size
    "n_embd": 1024,              # text_config.hidden_size
    "n_layer": 24,               # text_config.num_hidden_layers
    "n_head": 8,                 # text_config.num_attention_heads
    "n_head_kv": 2,              # text_config.num_key_value_heads
    "head_dim": 256,             # text_config.head_dim
    "n_ff": 3584,                # text_config.intermediate_size
    "n_ctx_train": 262144,       # text_config.max_position_embeddings
    "rope_theta": 10_000_000.0,  # text_config.rope_parameters.rope_theta
    "partial_rotary": 0.25,      # text_config.partial_rotary_factor: 64 of 256 dims roped
    "mrope_sections": [11, 11, 10, 0],   # not in the restated config: the converter's
                                         # Qwen3.5 default (_Qwen35MRopeMixin)
    "rms_eps": 1e-6,             # text_config.rms_norm_eps
    "conv_kernel": 4,            # text_config.linear_conv_kernel_dim
    "lin_head_dim": 128,         # text_config.linear_key_head_dim = linear_value_head_dim
    "lin_k_heads": 16,           # text_config.linear_num_key_heads
    "lin_v_heads": 16,           # text_config.linear_num_value_heads
    "full_attn_interval": 4,     # text_config.full_attention_interval
    "n_mtp": 0,                  # no MTP block is written (qwen35.py's Qwen3.5 shapes have one)
    "tied": True,                # tie_word_embeddings
    # --- projector: vision_config + root config + preprocessor
    "projector_type": "minicpmv4_6",
    "v_image_size": 448,         # preprocessor scale_resolution (the converter writes it as
                                 # clip.vision.image_size; vision_config.image_size 980 only
                                 # sizes the position table)
    "v_pos_side": 70,            # vision_config.image_size 980 / patch 14 (clip.cpp's buckets)
    "v_patch": 14,               # vision_config.patch_size
    "v_embd": 1152,              # vision_config.hidden_size
    "v_layer": 27,               # vision_config.num_hidden_layers
    "v_head": 16,                # vision_config.num_attention_heads
    "v_ff": 4304,                # vision_config.intermediate_size
    "v_eps": 1e-6,               # vision_config.layer_norm_eps
    "insert_layer_id": 6,        # insert_layer_id
    "window": 2,                 # vision_config.window_kernel_size (2, 2) (default)
    "scale_factor": 4,           # downsample_mode "16x" (default): 2 x 2 twice
    "max_slices": 9,             # max_slice_nums (mtmd hard-codes 9)
    "image_mean": [0.5, 0.5, 0.5],   # image processor: IMAGENET_STANDARD_MEAN
    "image_std": [0.5, 0.5, 0.5],    # IMAGENET_STANDARD_STD
    # published size "1.3B": tensors here ~0.75B text + ~0.61B projector
}

SHAPES: dict[str, dict] = {"minicpm-v-4.6": MINICPM_V_46}

NAME = "foveate-{shape}-shape (random weights)"

# The chat template, verbatim: Qwen3.5's, as vendored in llama.cpp
# (models/templates/Qwen3.5-4B.jinja). Guess: MiniCPM-V 4.6's own tokenizer_config.json
# template was not readable here; its text model is Qwen3.5's and public MiniCPM-V 4.6
# clients render "<|im_start|>user\n{image}\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
# followed by "<think>\n\n</think>\n\n" (thinking off), which is this template with
# enable_thinking false. llama.cpp detects it as LLM_CHAT_TEMPLATE_CHATML ("<|im_start|>").
CHAT_TEMPLATE = qwen35.CHAT_TEMPLATE

# MiniCPM-V's image tokens (processing_minicpmv4_6: image / slice / image-id markers, special);
# guess: their ids are not known here, placed at the top of the 248094 vocab
MINICPM_IDS: dict[str, int] = {
    "<image>": 248086, "</image>": 248087, "<slice>": 248088, "</slice>": 248089,
    "<image_id>": 248090, "</image_id>": 248091, "<video>": 248092, "</video>": 248093,
}
# Qwen3.5's added tokens at their ids (qwen35.py's table: <|endoftext|> 248044 and <|im_end|>
# 248046 are the generation EOS ids above, <|image_pad|> 248056 and <|video_pad|> 248057 the
# config's image / video token ids), then MiniCPM-V's
SPECIAL_IDS = {**qwen35.SPECIAL_IDS, **MINICPM_IDS}
EOS, PAD = "<|im_end|>", "<|endoftext|>"
# what mtmd puts around the overview and each slice (text tokens, tokenized as specials)
OV_BEGIN, OV_END, SLICE_BEGIN, SLICE_END = "<image>", "</image>", "<slice>", "</slice>"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def recurrent_layers(shape: str, layers: int | None = None) -> list[bool]:
    """Which text layers are gated-delta-net (linear attention): all but every
    full_attention_interval-th (qwen35.cpp's default; the converter writes it from
    layer_types). A cut text stack keeps at least one full-attention interval (3 linear + 1
    attention layer), so both layer kinds run (qwen35.depths)."""
    return qwen35.recurrent_flags(_shape(shape), layers)


def insert_layer(shape: str, layers: int | None = None) -> int:
    """The ViT layer after which the ViT merger runs: the real 6, or the cut ViT's last."""
    S = _shape(shape)
    return min(S["insert_layer_id"], qwen35.depths(S, layers)[1] - 1)


def vocab_of(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    S = _shape(shape)
    special = [(t, USER if t in QWEN_NOT_SPECIAL else CONTROL) for t in SPECIAL_IDS]
    if vocab is None:
        return char_vocab(special, S["n_vocab"], at=SPECIAL_IDS)
    return char_vocab(special, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    return qwen35.decoder_tensors(_shape(shape), layers, len(vocab_of(shape, vocab)[0]))


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = qwen35.depths(S, layers)[1]
    vd, vff, p_, d = S["v_embd"], S["v_ff"], S["v_patch"], S["n_embd"]
    win = S["window"] ** 2
    wd, wff = vd * win, vff * win                               # 4608, 17216
    m = "v.vit_merger."                                         # vision_tower.vit_merger
    return ([("v.patch_embd.weight", (vd, 3, p_, p_), F16, "w"),
             ("v.patch_embd.bias", (vd,), F32, "zeros"),
             ("v.position_embd.weight", (S["v_pos_side"] ** 2, vd), F32, "w")]
            + vit_blocks(n_v, vd, vff)
            + layer_norm("v.post_ln", vd)                        # post_layernorm
            + layer_norm(m + "ln1", vd)
            + linears(m, ["attn_q", "attn_k", "attn_v", "attn_out"], vd, vd)
            + layer_norm(m + "ds_ln", wd)                        # pre_norm (4608)
            + linears(m, ["ds_ffn_up"], wff, wd)                 # linear_1 4608 -> 17216
            + linears(m, ["ds_ffn_down"], vd, wff)               # linear_2 17216 -> 1152
            + layer_norm("mm.input_norm", wd)                    # merger.mlp.0.pre_norm
            + linears("mm.", ["up"], wd, wd)                     # linear_1 4608 -> 4608
            + linears("mm.", ["down"], d, wd))                   # linear_2 4608 -> 1024


def _text_kv(shape: str, layers: int | None, vocab: int | None):
    S = _shape(shape)
    n_layer = qwen35.depths(S, layers)[0]

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_of(shape, vocab)
        a = S["arch"]
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_uint32(f"{a}.attention.key_length", S["head_dim"])
        w.add_uint32(f"{a}.attention.value_length", S["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_uint32(f"{a}.ssm.conv_kernel", S["conv_kernel"])
        w.add_uint32(f"{a}.ssm.state_size", S["lin_head_dim"])
        w.add_uint32(f"{a}.ssm.group_count", S["lin_k_heads"])
        w.add_uint32(f"{a}.ssm.time_step_rank", S["lin_v_heads"])
        w.add_uint32(f"{a}.ssm.inner_size", S["lin_head_dim"] * S["lin_v_heads"])
        # written from text_config.layer_types (guess that the checkpoint lists them; without
        # it llama.cpp derives the same pattern from full_attention_interval)
        w.add_array(f"{a}.attention.recurrent_layers", recurrent_layers(shape, layers))
        w.add_uint32(f"{a}.full_attention_interval", S["full_attn_interval"])
        w.add_uint32(f"{a}.rope.dimension_count", int(S["head_dim"] * S["partial_rotary"]))
        w.add_array(f"{a}.rope.dimension_sections", S["mrope_sections"])
        add_char_tokenizer(w, tokens, types, bos=None, eos=EOS, pad=PAD, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, layers: int | None):
    S = _shape(shape)
    n_v = qwen35.depths(S, layers)[1]

    def kv(w) -> None:
        import gguf

        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_uint32("clip.vision.projection_dim", S["n_embd"])
        w.add_uint32("clip.vision.image_size", S["v_image_size"])
        w.add_uint32("clip.vision.patch_size", S["v_patch"])
        w.add_uint32("clip.vision.embedding_length", S["v_embd"])
        w.add_uint32("clip.vision.feed_forward_length", S["v_ff"])
        w.add_uint32("clip.vision.block_count", n_v)
        w.add_uint32("clip.vision.attention.head_count", S["v_head"])
        w.add_array("clip.vision.image_mean", S["image_mean"])
        w.add_array("clip.vision.image_std", S["image_std"])
        w.add_string("clip.projector_type", S["projector_type"])
        w.add_uint32("clip.vision.projector.scale_factor", S["scale_factor"])
        w.add_array("clip.vision.wa_layer_indexes", [insert_layer(shape, layers)])
        w.add_bool("clip.use_gelu", True)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    S = _shape(shape)
    return ((S["arch"], text_tensors(shape, layers, vocab), _text_kv(shape, layers, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, layers)))


def write_pair(out_dir, shape: str = "minicpm-v-4.6", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "minicpm-v-4.6", layers: int | None = None,
          vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


# --- mtmd's slicing (mtmd_image_preprocessor_llava_uhd), restated with its float32 arithmetic

def _ensure_divide(length: int, unit: int) -> int:
    # std::round: halves away from zero (Python's round() would round them to even)
    return max(math.floor(float(np.float32(length) / np.float32(unit)) + 0.5) * unit, unit)


def _best_resize(w: int, h: int, res: int, unit: int, upscale: bool) -> tuple[int, int]:
    if w * h > res * res or upscale:
        r = np.float32(w) / np.float32(h)
        h = int(np.float32(res) / np.sqrt(r))
        w = int(np.float32(h) * r)
    return _ensure_divide(w, unit), _ensure_divide(h, unit)


def slices(width: int, height: int, shape: str = "minicpm-v-4.6"):
    """mtmd's plan for a width x height page: (overview (w, h), grid (cols, rows) or None,
    slice (w, h) or None). No side over 448: a 448 x 448 overview alone."""
    S = _shape(shape)
    res, unit = S["v_image_size"], S["v_patch"] * S["scale_factor"]
    if width <= res and height <= res:
        return (res, res), None, None
    ov = _best_resize(width, height, res, unit, False)
    log_ratio = math.log(np.float32(width) / np.float32(height))
    ratio = np.float32(width) * height / (res * res)
    multiple = int(min(math.ceil(ratio), S["max_slices"]))
    best, err = (1, 1), math.inf
    for n in (multiple - 1, multiple, multiple + 1):
        if n == 1 or n > S["max_slices"]:
            continue
        for m in range(1, n + 1):
            if n % m == 0:
                e = abs(log_ratio - math.log(m / (n // m)))
                if e < err:
                    best, err = (m, n // m), e
    gx, gy = best
    rw, rh = _ensure_divide(width, gx), _ensure_divide(height, gy)
    sw, sh = _best_resize(rw // gx, rh // gy, res, unit, True)
    return ov, best, (sw, sh)


def _rows(w: int, h: int, shape: str) -> int:
    S = _shape(shape)
    return (w // S["v_patch"]) * (h // S["v_patch"]) // S["scale_factor"] ** 2


def image_tokens(width: int, height: int, shape: str = "minicpm-v-4.6") -> int:
    """Image rows mtmd makes of a width x height page: the overview chunk plus one chunk per
    slice, each (W/14)(H/14)/16 rows; all content (no learned rows). The text tokens mtmd puts
    between them (<image> </image>, <slice> </slice> per slice, "\\n" between slice rows) are
    not counted."""
    ov, grid, sl = slices(width, height, shape)
    n = _rows(*ov, shape)
    if grid:
        n += grid[0] * grid[1] * _rows(*sl, shape)
    return n


def text_tokens_between(width: int, height: int, shape: str = "minicpm-v-4.6") -> int:
    """The text tokens mtmd writes around and between a page's chunks."""
    _, grid, _ = slices(width, height, shape)
    if not grid:
        return 2
    return 2 + 2 * grid[0] * grid[1] + (grid[1] - 1)
