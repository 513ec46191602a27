"""Random-weight GGUF pairs with the exact shapes of LFM2-VL (LiquidAI/LFM2-VL-450M and
LiquidAI/LFM2-VL-1.6B, `Lfm2VlForConditionalGeneration`), as llama.cpp's converter writes them
(conversion/lfm2.py: LFM2Model for the text model, LFM2VLModel for the mmproj).

* text model: llama.cpp arch `lfm2` (src/models/lfm2.cpp), a hybrid of 16 layers: short-
  convolution blocks (`shortconv.*`, a recurrent state of L_cache - 1 = 2 columns per sequence)
  and GQA attention blocks (per-head RMS q/k norms) at layers 2 5 8 10 12 14
  (`full_attention_layers` / `layer_types`). The converter writes `lfm2.attention.head_count_kv`
  as a per-layer list, 0 on the conv layers; llama.cpp's loader takes a layer with 0 KV heads
  as recurrent (the memory is llama_memory_hybrid: KV cells for the 6 attention layers,
  recurrent cells for the 10 conv layers). SwiGLU FFN whose width is `block_ff_dim` after
  the converter's block_auto_adjust_ff_dim (int(2/3 x) rounded up to block_multiple_of 256:
  6656 -> 4608, 12288 -> 8192). 1-D RoPE (NEOX), theta 1e6. `token_embd_norm` is the final
  norm; the output is tied to the embeddings (no `output.weight`). This is the text writer of
  lfm2.py (its text_tensors), with LFM2-VL's numbers and vocab.
* projector: mtmd projector type `lfm2` (tools/mtmd/models/siglip.cpp): a SigLIP2 NaFlex ViT
  (patch 16, the Linear patch embedding reshaped to a Conv2d kernel with a bias, a learned
  16 x 16 position table bilinearly resized to the page's patch grid, LayerNorm with bias,
  GELU-tanh MLP, `post_layernorm` kept), then the pixel unshuffle (`downsample_factor` 2:
  2 x 2 patches -> 4 x width), no projector LayerNorm (`projector_use_layernorm` false), and a
  GELU MLP `mm.1` (4 v_embd -> 2048, bias) / `mm.2` (2048 -> n_embd, bias). The converter
  fixes `clip.vision.image_size` at 256 (so the 256-row position table is 16 x 16).

Tokens (mtmd-image.cpp mtmd_image_preprocessor_lfm2; clip.cpp sets min/max image tokens 64 /
256, i.e. 65536 .. 262144 px at 32 px per token): a page whose sides rounded to 32 px hold at
most 2 x 262144 px is one image chunk, resized (aspect kept, sides multiples of 32, within
64 .. 256 tokens) - one token per 32 x 32 px. A larger page is *tiled*: a grid of 2 .. 10
tiles of 512 x 512 px (the grid whose aspect is nearest the page's) of 256 tokens each, in
row-major order, then a thumbnail (the single-chunk resize, at most 256 tokens); each tile and
the thumbnail is its own image chunk. mtmd wraps the whole image in the text tokens
"<|image_start|>" ... "<|image_end|>", puts "<|img_row_R_col_C|>" before each tile and
"<|img_thumbnail|>" before the thumbnail (text tokens between chunks; no learned rows inside
a chunk). Positions are 1-D (one per row, consecutive). See image_tokens / image_chunks.

Cut stacks (`layers`): the ViT is cut to `layers`; the text stack to at least 3 layers, so
that it keeps its first attention layer (index 2) as well as conv layers (a cut of 1 or 2
layers would be conv only: no KV cache at all).

Only the tokenizer differs from the real model (byte-level BPE, `gpt2` / pre `lfm2`): a
character-level SentencePiece vocab with LFM2-VL's special tokens at their real ids (they all
lie below 500, so a 512-token test vocab keeps them), padded with unused tokens to 65536.

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import lfm2 as _lfm2
from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, layer_norm, linears, pick_shape, vit_blocks, write_pair_files,
                         pair_sizes)

ARCH = "lfm2"
PROJECTOR = "lfm2"

# Sources. Text and vision numbers: LFM2-VL-450M / -1.6B config.json as pinned (with the
# official checkpoints' tensor-inventory digests, 349 / 589 tensors) in a third-party loader's
# test (stored copy, `pinned_official_config_json`, repo not named by the index), the same as a
# fine-tune's config.json of LFM2-VL-1.6B (huggingface.co/Ba2han/tr_ocr6 config.json: layer
# types, block_dim 2048, intermediate_size 12288, conv_L_cache 3, projector_hidden_size 2048,
# projector_use_layernorm false, downsample_factor 2, image_token_id 396, eos 7, bos 1, pad 0)
# and the model card (huggingface.co/LiquidAI/LFM2-VL-1.6B: LM 350M / 1.2B, SigLIP2 NaFlex base
# 86M / shape-optimized 400M). Processor numbers: transformers tests/models/lfm2_vl/
# test_processing_lfm2_vl.py (min/max image tokens 64 / 256, tile 512, tiles 2 .. 10, thumbnail,
# max_pixels_tolerance 2.0), which llama.cpp hard-codes for this projector.
_COMMON = {
    "n_vocab": 65536,        # text_config.vocab_size
    "n_layer": 16,           # text_config.num_hidden_layers
    "attn_layers": (2, 5, 8, 10, 12, 14),  # text_config.full_attention_layers / layer_types
    "n_head_kv": 8,          # text_config.num_key_value_heads
    "l_cache": 3,            # text_config.conv_L_cache
    "n_ctx_train": 128000,   # text_config.max_position_embeddings (the card says 32,768 of text)
    "rope_theta": 1e6,       # text_config.rope_theta: not in the pinned copy; LFM2's, a guess
    "rms_eps": 1e-5,         # text_config.norm_eps (block_norm_eps 1e-05 in Ba2han/tr_ocr6)
    "tied": True,            # tie_word_embeddings
    "patch": 16,             # vision_config.patch_size (encoder_patch_size)
    "n_pos_embd": 256,       # vision_config.num_patches (16 x 16)
    "image_size": 256,       # what the converter writes (LFM2VLModel.__init__), not a config value
    "merge": 2,              # downsample_factor -> clip.vision.projector.scale_factor
    "proj_hidden": 2048,     # projector_hidden_size
    "v_eps": 1e-6,           # vision_config.layer_norm_eps: SigLIP2's default, a guess
    "image_mean": (0.5, 0.5, 0.5),  # preprocessor_config.json: SigLIP2's defaults, a guess
    "image_std": (0.5, 0.5, 0.5),
}
SHAPES: dict[str, dict] = {
    "lfm2-vl-450m": {
        "hf": "LiquidAI/LFM2-VL-450M",
        "n_embd": 1024,          # text_config.hidden_size (LFM2-350M)
        "n_head": 16,            # text_config.num_attention_heads (head 64)
        "n_ff": 4608,            # block_ff_dim 6656, auto-adjusted: int(2 * 6656 / 3) -> 4608
        "v_embd": 768,           # vision_config.hidden_size (SigLIP2 NaFlex base)
        "v_layer": 12,           # vision_config.num_hidden_layers (vision_feature_layer -1)
        "v_head": 12,            # vision_config.num_attention_heads
        "v_ff": 3072,            # vision_config.intermediate_size
        **_COMMON,
    },
    "lfm2-vl-1.6b": {
        "hf": "LiquidAI/LFM2-VL-1.6B",
        "n_embd": 2048,          # text_config.hidden_size (LFM2-1.2B)
        "n_head": 32,            # text_config.num_attention_heads (head 64)
        "n_ff": 8192,            # block_ff_dim 12288, auto-adjusted: int(2 * 12288 / 3) = 8192
        "v_embd": 1152,          # vision_config.hidden_size (SigLIP2 NaFlex so400m)
        "v_layer": 27,           # vision_config.num_hidden_layers (vision_feature_layer -1)
        "v_head": 16,            # vision_config.num_attention_heads
        "v_ff": 4304,            # vision_config.intermediate_size
        **_COMMON,
    },
}

# The real template, verbatim: chat_template.jinja of LiquidAI/LFM2-VL-450M and -1.6B (434
# bytes in both repos' file listings on huggingface.co). Its text is the chat_template in
# transformers' tests/models/lfm2_vl/test_processing_lfm2_vl.py (prepare_processor_dict), which
# is exactly 434 bytes; the file itself was not readable here. llama.cpp detects it as
# LLM_CHAT_TEMPLATE_CHATML ("<|im_start|>"): "<|im_start|>user\n...<|im_end|>\n<|im_start|>
# assistant\n"; the jinja's leading {{bos_token}} is the BOS the tokenizer adds (add_bos).
CHAT_TEMPLATE = (
    "{{bos_token}}{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}"
    "{{ '<image>' }}"
    "{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{'<|im_start|>assistant\n' }}"
    "{% endif %}"
)

# LFM2's added tokens at their real ids. 0..13: LFM2's tokenizer (a third-party copy of the
# LFM2.5-1.2B-Instruct card's table, github neatflowcv/search docs/lfm2.5-chat-template.md; the
# LFM2 family shares it); 396 <image> (config.json image_token_id); 498 / 499 image start / end
# (a third-party test's copy of the LFM2-VL ids, with 1, 6, 7 and 396 as above). The 100 tile
# markers <|img_row_R_col_C|> (R, C in 1..10, row-major) at 397..496 and <|img_thumbnail|> at 497
# fill exactly the ids between: their order is a guess.
SPECIAL_IDS: dict[str, int] = {
    "<|pad|>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "<|fim_pre|>": 3,
    "<|fim_mid|>": 4, "<|fim_suf|>": 5, "<|im_start|>": 6, "<|im_end|>": 7,
    "<|tool_list_start|>": 8, "<|tool_list_end|>": 9, "<|tool_call_start|>": 10,
    "<|tool_call_end|>": 11, "<|tool_response_start|>": 12, "<|tool_response_end|>": 13,
    "<image>": 396,
    **{f"<|img_row_{r}_col_{c}|>": 396 + (r - 1) * 10 + c for r in range(1, 11)
       for c in range(1, 11)},
    "<|img_thumbnail|>": 497, "<|image_start|>": 498, "<|image_end|>": 499,
}
SPECIAL = [(t, CONTROL) for t in SPECIAL_IDS] + [("<unk>", UNKNOWN)]
# tokenizer_config bos / eos (generation_config eos_token_id 7) / pad; add_bos_token true is
# a guess (the template starts with {{bos_token}}, HF tokenizes chats without special tokens)
BOS, EOS, PAD = "<|startoftext|>", "<|im_end|>", "<|pad|>"
ADD_BOS = True
# what mtmd puts around the image and between its chunks (text tokens)
IMAGE_BEGIN, IMAGE_END, THUMBNAIL = "<|image_start|>", "<|image_end|>", "<|img_thumbnail|>"

NAME = "foveate-{shape}-shape (random weights)"

# mtmd's constants for this projector (mtmd-image.h mtmd_image_preprocessor_lfm2, clip.cpp)
MIN_TOKENS, MAX_TOKENS = 64, 256
TILE, MIN_TILES, MAX_TILES, TOLERANCE = 512, 2, 10, 2.0


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text, vision) layer counts: the text stack keeps its first attention layer."""
    if layers is None:
        return S["n_layer"], S["v_layer"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return (min(max(layers, S["attn_layers"][0] + 1), S["n_layer"]),
            min(layers, S["v_layer"]))


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: specials at their real ids whenever the vocab is large enough."""
    S = _shape(shape)
    n = S["n_vocab"] if vocab is None else vocab
    at = SPECIAL_IDS if n > max(SPECIAL_IDS.values()) else None
    return char_vocab(SPECIAL, n, at=at)


def _text_shape(shape: str, layers: int | None, vocab: int | None) -> dict:
    """lfm2.py's shape dict for this model's language model, cut to `layers`."""
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]
    keys = ("n_embd", "n_ff", "n_head", "n_head_kv", "l_cache", "rope_theta", "rms_eps",
            "n_ctx_train")
    return dict({k: S[k] for k in keys}, n_layer=n_layer,
                attn_layers=tuple(i for i in S["attn_layers"] if i < n_layer),
                n_vocab=len(vocab_tokens(shape, vocab)[0]))


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    # lfm2.text_tensors: token_embd, token_embd_norm (the output norm), per layer the norms and
    # FFN, then attention (q/k norms, q, k, v, output) or the short conv (conv, in/out proj)
    t = _lfm2.text_tensors(_text_shape(shape, layers, vocab))
    if not _shape(shape)["tied"]:
        T = _text_shape(shape, layers, vocab)
        t.append(("output.weight", (T["n_vocab"], T["n_embd"]), F16, "w"))
    return t


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    vd, vff, p = S["v_embd"], S["v_ff"], S["patch"]
    merged = vd * S["merge"] ** 2
    return ([("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),  # the Linear, as a conv kernel
             ("v.patch_embd.bias", (vd,), F32, "zeros"),
             ("v.position_embd.weight", (S["n_pos_embd"], vd), F32, "w")]   # forced F32
            + vit_blocks(n_v, vd, vff)                           # mlp.fc1 / fc2: ffn_up / down
            + layer_norm("v.post_ln", vd)                        # post_layernorm
            + linears("mm.", ["1"], S["proj_hidden"], merged)    # multi_modal_projector.linear_1
            + linears("mm.", ["2"], S["n_embd"], S["proj_hidden"]))   # linear_2


def _text_kv(shape: str, layers: int | None, vocab: int | None):
    T = _text_shape(shape, layers, vocab)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        # in the converter's order (LFM2Model.set_gguf_parameters, TextModel's keys first)
        add_llm_head(w, NAME.format(shape=shape), T["n_layer"], T,
                     head_count_kv=[T["n_head_kv"] if i in T["attn_layers"] else 0
                                    for i in range(T["n_layer"])])
        w.add_rope_freq_base(T["rope_theta"])
        w.add_layer_norm_rms_eps(T["rms_eps"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_vocab_size(len(tokens))
        w.add_shortconv_l_cache(T["l_cache"])
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, pad=PAD, add_bos=ADD_BOS)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, layers: int | None):
    S = _shape(shape)
    n_v = _depths(S, layers)[1]

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
        w.add_vision_feed_forward_length(S["v_ff"])
        w.add_vision_block_count(n_v)
        w.add_vision_head_count(S["v_head"])
        w.add_vision_image_mean(list(S["image_mean"]))
        w.add_vision_image_std(list(S["image_std"]))
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_attention_layernorm_eps(S["v_eps"])
        w.add_vision_projector_scale_factor(S["merge"])
        w.add_vision_use_gelu(True)
        # LFM2VLModel then writes the block count again, less the layers after
        # vision_feature_layer (-1: none dropped), the same value: one key
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, layers, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, layers)))


def write_pair(out_dir, shape: str, layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str, layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


# --- image tokens: mtmd's rule for this projector --------------------------------------------

def _f32(x) -> np.float32:
    return np.float32(x)


def _resize(width: int, height: int, align: int, min_px: int, max_px: int) -> tuple[int, int]:
    """img_tool::calc_size_preserved_ratio (mtmd-image.cpp), in its float arithmetic."""
    f = _f32(align)
    rnd = lambda x: int(math.floor(_f32(x) / f + _f32(0.5))) * align     # std::round, x > 0
    ceil_ = lambda x: int(math.ceil(_f32(x) / f)) * align
    floor_ = lambda x: int(math.floor(_f32(x) / f)) * align
    w, h = max(align, rnd(width)), max(align, rnd(height))
    if h * w > max_px:
        beta = np.sqrt(_f32(height) * _f32(width) / _f32(max_px))
        h, w = max(align, floor_(_f32(height) / beta)), max(align, floor_(_f32(width) / beta))
    elif h * w < min_px:
        beta = np.sqrt(_f32(min_px) / (_f32(height) * _f32(width)))
        h, w = ceil_(_f32(height) * beta), ceil_(_f32(width) * beta)
    return w, h


def tile_grid(width: int, height: int, shape: str = "lfm2-vl-450m") -> tuple[int, int] | None:
    """(columns, rows) of the tiles mtmd cuts the page into, or None (one chunk)."""
    S = _shape(shape)
    align = S["patch"] * S["merge"]
    # should_tile: sides rounded to the 32 px grid (nearbyint: half to even), against 2 x max
    h_bar = max(S["patch"], round(height / align) * align)
    w_bar = max(S["patch"], round(width / align) * align)
    if h_bar * w_bar <= MAX_TOKENS * align * align * TOLERANCE:
        return None
    ratios: list[tuple[int, int]] = []
    for n in range(MIN_TILES, MAX_TILES + 1):
        for w in range(1, n + 1):
            for h in range(1, n + 1):
                if MIN_TILES <= w * h <= MAX_TILES and (w, h) not in ratios:
                    ratios.append((w, h))
    ratios.sort(key=lambda r: r[0] * r[1])
    aspect = _f32(width) / _f32(height)
    best, best_diff = (1, 1), np.float32(np.inf)
    for w, h in ratios:   # find_closest_aspect_ratio
        diff = abs(aspect - _f32(w) / _f32(h))
        if diff < best_diff:
            best, best_diff = (w, h), diff
        elif diff == best_diff and _f32(width * height) > _f32(0.5) * _f32(TILE * TILE * w * h):
            best = (w, h)
    return best


def image_chunks(width: int, height: int, shape: str = "lfm2-vl-450m") -> list[int]:
    """The image chunks mtmd makes of a width x height page, as rows each: one chunk, or the
    tiles (row-major) then the thumbnail."""
    S = _shape(shape)
    align = S["patch"] * S["merge"]
    w, h = _resize(width, height, align, MIN_TOKENS * align * align, MAX_TOKENS * align * align)
    thumb = (w // align) * (h // align)
    grid = tile_grid(width, height, shape)
    if grid is None:
        return [thumb]
    return [(TILE // align) ** 2] * (grid[0] * grid[1]) + [thumb]


def image_tokens(width: int, height: int, shape: str = "lfm2-vl-450m") -> int:
    """Image rows mtmd makes of a width x height page, tiles and thumbnail included."""
    return sum(image_chunks(width, height, shape))
