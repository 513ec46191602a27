"""InternVL3 (OpenGVLab/InternVL3-1B): random weights, real shapes, as llama.cpp's converter
writes the original (`InternVLChatModel`, trust_remote_code) checkpoint.

What the converter makes of it (conversion/internvl.py InternVisionModel for the mmproj,
chosen by vision_config.architectures = ["InternVisionModel"]; the text model by
llm_config.architectures = ["Qwen2ForCausalLM"] -> conversion/qwen.py Qwen2Model; base.py
renames `llm_config` to `text_config`):

* text GGUF: LLM arch `qwen2` (the Qwen2.5-0.5B decoder: 24 layers of 896, 14 query heads of
  64 over 2 KV heads, q/k/v biases, SwiGLU 4864, NEOX RoPE theta 1e6; the config's
  `rope_scaling` {type dynamic, factor 2} is not written, base.py skips "dynamic"), untied
  `output.weight`: 291 tensors;
* mmproj GGUF: projector `internvl`: InternViT-300M (patch 14, image 448, 24 layers of 1024,
  16 heads, LayerNorm with biases, GELU FFN 4096, a CLS row `v.class_embd` and a learned
  1025-row position table, layer scales `ls1` / `ls2`; the fused qkv is split into q, k, v by
  the converter), then the 2x2 pixel shuffle (`clip.vision.projector.scale_factor` 2 =
  1 / downsample_ratio 0.5) and `mlp1`: LayerNorm(4096) -> Linear 4096 -> 896 -> GELU ->
  Linear 896 -> 896 (`mm.model.mlp.{0,1,3}`): 442 tensors.

mtmd (tools/mtmd/mtmd.cpp, mtmd-image.cpp mtmd_image_preprocessor_internvl, clip.cpp
set_internvl_dhr_res_candidates) for this projector: a page no side of which exceeds 448 px
becomes one 448 x 448 chunk (stretched, no tiles); a larger page is resized to the best of the
candidate grids a x b tiles of 448 (1 <= a * b <= 12, llava's select_best_resolution: most
effective pixels, then least waste) and cut into a*b tiles, each its own image chunk, then a
448 x 448 thumbnail chunk (tiles first, thumbnail last). Every chunk is (448/14/2)^2 = 256
rows; no learned marker rows. mtmd wraps all the page's chunks in the *text* tokens
<img> ... </img> (nothing between the chunks). Positions are 1-D (qwen2's NEOX RoPE, mtmd pos
type NORMAL). InternVL's own processor picks the grid differently (closest aspect ratio); the
counts here are mtmd's.

Only the tokenizer differs from the real model: a character-level SentencePiece vocab with
InternVL3's special tokens at their real ids (151643..151673), padded with unused tokens to
the real 151674, instead of Qwen2's byte-level BPE (`gpt2`, pre `qwen2`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .gguf_specs import (CONTROL, F16, F32, QWEN_NOT_SPECIAL, USER, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, cut_depths, dense_decoder, pick_shape,
                         qwen_added, vit_block, write_pair_files, pair_sizes)

# The real numbers. Sources: OpenGVLab/InternVL3-1B's config (printed InternVLChatConfig and
# module tree of the loaded model, and its tokenizer's added_tokens_decoder, in a stored
# public notebook dump of `AutoModel.from_pretrained("OpenGVLab/InternVL3-1B")`; the image
# token ids also in transformers' models/internvl/convert_internvl_weights_to_hf.py), and
# llama.cpp's converter / loader in this tree.
INTERNVL3_1B: dict = {
    # --- text decoder: llm_config (Qwen2ForCausalLM) -> LLM arch qwen2
    "arch": "qwen2",
    "n_vocab": 151674,           # llm_config.vocab_size (Qwen2.5's 151665 + 9 InternVL tokens)
    "n_embd": 896,               # llm_config.hidden_size
    "n_layer": 24,               # llm_config.num_hidden_layers
    "n_head": 14,                # llm_config.num_attention_heads (head 64)
    "n_head_kv": 2,              # llm_config.num_key_value_heads
    "n_ff": 4864,                # llm_config.intermediate_size
    "n_ctx_train": 32768,        # llm_config.max_position_embeddings
    "rope_theta": 1_000_000.0,   # llm_config.rope_theta
    "rms_eps": 1e-6,             # llm_config.rms_norm_eps
    "tied_embeddings": False,    # tie_word_embeddings false; lm_head (151674 x 896) printed
    # --- projector: vision_config (InternViT-300M-448px) + root config
    "projector_type": "internvl",
    "v_image_size": 448,         # vision_config.image_size (= force_image_size)
    "v_patch": 14,               # vision_config.patch_size
    "v_embd": 1024,              # vision_config.hidden_size
    "v_layer": 24,               # vision_config.num_hidden_layers
    "v_head": 16,                # vision_config.num_attention_heads
    "v_ff": 4096,                # vision_config.intermediate_size
    "v_eps": 1e-6,               # vision_config.layer_norm_eps
    "v_act_gelu": True,          # vision_config.hidden_act = "gelu" -> clip.use_gelu
    "scale_factor": 2,           # int(1 / downsample_ratio 0.5)
    "min_tiles": 1,              # min_dynamic_patch
    "max_tiles": 12,             # max_dynamic_patch
    # preprocessor_config.json image_mean / image_std: ImageNet's, as InternVL's processor
    # (IMAGENET_MEAN / _STD) and transformers' converter (write_image_processor) use; the
    # checkpoint's own preprocessor_config.json was not readable here (guess that it says so)
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    # published size "1B" (0.9B): tensors here ~630M text + ~300M projector
}

SHAPES: dict[str, dict] = {"internvl3-1b": INTERNVL3_1B}

NAME = "foveate-{shape}-shape (random weights)"

# The chat template, verbatim: the one transformers' converter writes for the -hf release of
# InternVL3 (models/internvl/convert_internvl_weights_to_hf.py `chat_template`, used by
# OpenGVLab/InternVL3-1B-hf). The original checkpoint's tokenizer_config.json template (which
# the llama.cpp converter would copy, with InternVL's Chinese default system prompt) was not
# readable here. llama.cpp detects this one as LLM_CHAT_TEMPLATE_CHATML ("<|im_start|>"), so
# foveate renders "<|im_start|>user\n{marker}\n{prompt}<|im_end|>\n<|im_start|>assistant\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}"
    "{{ '<image>\n' }}"
    "{% elif content['type'] == 'video' %}"
    "{{ '<video>\n' }}"
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

# InternVL3-1B's added tokens at their real ids (its tokenizer's added_tokens_decoder): Qwen2.5's
# 151643..151664 (the "<|...|>" specials up to <|video_pad|> are special, the tool / fim ones
# are not) and InternVL's nine special ones 151665..151673
SPECIAL_IDS: dict[str, int] = {
    **qwen_added(22),
    "<img>": 151665, "</img>": 151666, "<IMG_CONTEXT>": 151667,
    "<quad>": 151668, "</quad>": 151669, "<ref>": 151670, "</ref>": 151671,
    "<box>": 151672, "</box>": 151673,
}
# eos <|im_end|> and pad <|endoftext|> (tokenizer); bos_token_id 151643 (llm_config), which
# the converter's SpecialVocab takes from config.json; no BOS is added
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
# what mtmd puts around the page's image chunks (text tokens, tokenized as specials)
IMAGE_BEGIN, IMAGE_END = "<img>", "</img>"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    return cut_depths(layers, S["n_layer"], S["v_layer"])


def vocab_of(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The character vocab: real size with the specials at their real ids (vocab None), or
    padded only to `vocab`."""
    S = _shape(shape)
    special = [(t, USER if t in QWEN_NOT_SPECIAL else CONTROL) for t in SPECIAL_IDS]
    if vocab is None:
        return char_vocab(special, S["n_vocab"], at=SPECIAL_IDS)
    return char_vocab(special, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer, _ = _depths(S, layers)
    n_vocab = len(vocab_of(shape, vocab)[0])
    d, ff = S["n_embd"], S["n_ff"]
    kv = S["n_head_kv"] * d // S["n_head"]                       # 2 x 64 = 128
    return dense_decoder(n_layer, n_vocab, d, ff, d, kv, S["tied_embeddings"], qkv_bias=True)


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    _, n_v = _depths(S, layers)
    vd, vff, p_, d = S["v_embd"], S["v_ff"], S["v_patch"], S["n_embd"]
    n_pos = (S["v_image_size"] // p_) ** 2 + 1                    # 32 x 32 patches + CLS
    merged = vd * S["scale_factor"] ** 2                           # 4096
    # class_embedding (1, 1, 1024) has no ".weight": base.py keeps it F32; the position table
    # (1, 1025, 1024) is forced F32 (InternVisionModel.tensor_force_quant); both keep their
    # 3-D HF shapes (the converter does not squeeze)
    t: list[Spec] = [("v.class_embd", (1, 1, vd), F32, "w"),
                     ("v.patch_embd.weight", (vd, 3, p_, p_), F16, "w"),
                     ("v.patch_embd.bias", (vd,), F32, "zeros"),
                     ("v.position_embd.weight", (1, n_pos, vd), F32, "w")]
    for i in range(n_v):
        # attn.qkv (split), attn.proj, norm1 / norm2, mlp.fc1 / fc2, then the layer scales
        b = f"v.blk.{i}."
        t += vit_block(b, vd, vff) + [(b + "ls1.weight", (vd,), F32, "ones"),
                                      (b + "ls2.weight", (vd,), F32, "ones")]
    t += [("mm.model.mlp.0.weight", (merged,), F32, "ones"),       # mlp1.0 LayerNorm(4096)
          ("mm.model.mlp.0.bias", (merged,), F32, "zeros"),
          ("mm.model.mlp.1.weight", (d, merged), F16, "w"),         # mlp1.1 Linear 4096 -> 896
          ("mm.model.mlp.1.bias", (d,), F32, "zeros"),
          ("mm.model.mlp.3.weight", (d, d), F16, "w"),              # mlp1.3 Linear 896 -> 896
          ("mm.model.mlp.3.bias", (d,), F32, "zeros")]
    return t


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_of(shape, vocab)
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, pad=PAD, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, n_v: int):
    S = _shape(shape)

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
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
        w.add_bool("clip.use_gelu", S["v_act_gelu"])
        w.add_uint32("clip.vision.projector.scale_factor", S["scale_factor"])
        w.add_uint32("clip.vision.preproc_min_tiles", S["min_tiles"])
        w.add_uint32("clip.vision.preproc_max_tiles", S["max_tiles"])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    S = _shape(shape)
    n_t, n_v = _depths(S, layers)
    return ((S["arch"], text_tensors(shape, layers, vocab), _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "internvl3-1b", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "internvl3-1b", layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def tile_grid(width: int, height: int, shape: str = "internvl3-1b") -> tuple[int, int] | None:
    """The (columns, rows) of 448-px tiles mtmd cuts a width x height page into, or None when
    the page is one stretched 448 x 448 chunk (no side over 448). mtmd's rule: candidates
    (a * 448, b * 448) for min_tiles <= a * b <= max_tiles (clip.cpp
    set_internvl_dhr_res_candidates, a = columns), llava's select_best_resolution over them
    (most effective pixels, then least wasted area; float32 scale, truncated sizes)."""
    S = _shape(shape)
    size, lo, hi = S["v_image_size"], S["min_tiles"], S["max_tiles"]
    if width <= size and height <= size:
        return None
    f32 = np.float32
    best, best_eff, best_waste = None, 0, None
    for a in range(lo, hi + 1):
        for b in range(max(-(-lo // a), lo), min(hi // a, hi) + 1):
            cw, ch = a * size, b * size
            scale = min(f32(cw) / f32(width), f32(ch) / f32(height))
            tw, th = int(f32(width) * scale), int(f32(height) * scale)
            eff = min(tw * th, width * height)
            waste = cw * ch - eff
            if eff > best_eff or (eff == best_eff and waste < best_waste):
                best, best_eff, best_waste = (a, b), eff, waste
    return best


def image_tokens(width: int, height: int, shape: str = "internvl3-1b") -> int:
    """Image rows mtmd makes of a width x height page: 256 per chunk (448 / 14 patches,
    2 x 2 pixel shuffle), one chunk per tile plus the thumbnail when the page is tiled, a
    single chunk otherwise. All rows are content (no learned marker rows); <img> / </img>
    around them are text tokens, not counted here."""
    S = _shape(shape)
    per_chunk = (S["v_image_size"] // S["v_patch"] // S["scale_factor"]) ** 2
    grid = tile_grid(width, height, shape)
    return per_chunk * (1 if grid is None else grid[0] * grid[1] + 1)
