"""dots.ocr (rednote-hilab/dots.ocr): random weights, real shapes.

What llama.cpp's converter makes of `DotsOCRForCausalLM` (conversion/qwen.py Qwen2Model for
the text, conversion/dotsocr.py DotsOCRVisionModel for the projector):

* text GGUF: LLM arch `qwen2` (a Qwen2-1.5B-sized decoder: 28 layers of 1536, 12 query heads
  of 128 over 2 KV heads, q/k/v biases, SwiGLU 8960, NEOX RoPE theta 1e6, 1-D: no M-RoPE
  sections), untied `output.weight`: 339 tensors;
* mmproj GGUF: projector `dots_ocr`: the dots NaViT (patch 14 conv with bias + RMSNorm
  (`v.pre_ln`), 42 blocks of 1536, 12 heads of 128 with a fused qkv and no biases, RMSNorm,
  SiLU-gated FFN 4224 without biases, 2-D vision RoPE theta 1e4), the post-trunk RMSNorm
  (`mm.post_norm`), then the Qwen2-VL-style merger: LayerNorm (`mm.input_norm`, with bias),
  2x2 merge to 6144, GELU MLP `mm.0` (6144 -> 6144) / `mm.2` (6144 -> 1536), with biases:
  304 tensors.

mtmd for this projector: the page keeps its size rounded to multiples of 28 (patch 14 x merge
2), within clip.vision.image_min_pixels / image_max_pixels (mtmd_image_preprocessor_dyn_size,
Qwen2-VL's smart_resize); the image chunk is (W/28) x (H/28) rows, no learned marker rows;
mtmd wraps it in the *text* tokens `<|img|>` ... `<|endofimg|>`. Positions are 1-D (mtmd pos
type NORMAL, one position per row, consecutive).

Only the tokenizer differs from the real model: a character-level SentencePiece vocab
(gguf_specs.char_vocab) with Qwen2.5's and dots' special tokens at their real ids
(151643..151673), padded with unused tokens to the real 151936, instead of the byte-level BPE
(`gpt2`, pre `qwen2`).
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (cut_depths, CONTROL, F16, F32, USER, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, dense_decoder, pick_shape, qwen_added,
                         write_pair_files, pair_sizes)

# The real numbers. Sources: rednote-hilab/dots.ocr config.json (flat Qwen2 text fields +
# vision_config), as quoted in the stored public docs/fixtures that reproduce it (hipfire's
# dots.ocr port plan, which checked it against the safetensors index; the MLXUI and
# derive-arch test fixtures of the same config), the tensor layout of vLLM's
# model_executor/models/dots_ocr.py, dots_ocr/utils/consts.py of github rednote-hilab/dots.ocr,
# and llama.cpp's converter/loader in this tree.
DOTS_OCR: dict = {
    # --- text decoder (config.json, top level) -> LLM arch qwen2
    "arch": "qwen2",
    "n_vocab": 151936,           # vocab_size
    "n_embd": 1536,              # hidden_size
    "n_layer": 28,               # num_hidden_layers
    "n_head": 12,                # num_attention_heads (head_dim 128: no head_dim key, so the
                                 # converter writes no key_length / value_length)
    "n_head_kv": 2,              # num_key_value_heads
    "n_ff": 8960,                # intermediate_size
    "n_ctx_train": 131072,       # max_position_embeddings
    "rope_theta": 1_000_000.0,   # rope_theta
    "rms_eps": 1e-6,             # rms_norm_eps
    "attn_bias": True,           # attention_bias: q/k/v biases (o_proj has none, as Qwen2)
    "tied_embeddings": False,    # tie_word_embeddings: separate lm_head -> output.weight
    # --- projector (config.json vision_config) -> projector dots_ocr
    "projector_type": "dots_ocr",
    "v_patch": 14,               # vision_config.patch_size
    "v_embd": 1536,              # vision_config.embed_dim (= hidden_size, the converter's
                                 # clip.vision.embedding_length)
    "v_layer": 42,               # vision_config.num_hidden_layers
    "v_head": 12,                # vision_config.num_attention_heads (head_dim 128)
    "v_ff": 4224,                # vision_config.intermediate_size
    "v_eps": 1e-5,               # vision_config.rms_norm_eps
    "merge": 2,                  # vision_config.spatial_merge_size -> projector.scale_factor
    # image_size: the converter forces 0 ("dynamic resolution")
    "min_pixels": 3136,          # preprocessor_config.json min_pixels (= MIN_PIXELS of
                                 # dots_ocr/utils/consts.py; the json itself was not readable
                                 # here, a guess that it matches)
    "max_pixels": 11289600,      # preprocessor_config.json max_pixels (= MAX_PIXELS, same guess)
    "image_mean": [0.48145466, 0.4578275, 0.40821073],  # preprocessor (Qwen2VLImageProcessor,
    "image_std": [0.26862954, 0.26130258, 0.27577711],   # CLIP mean/std; per hipfire's plan)
    # published size: 1.7B LLM + ~1.2B vision, "3.04B" total (HF page / hipfire's count)
}

SHAPES: dict[str, dict] = {"dots-ocr": DOTS_OCR}

NAME = "foveate-dots-ocr-shape (random weights)"

# tokenizer_config.json's chat_template (what the converter stores; the processor's template,
# with <|img|><|imgpad|><|endofimg|> for image parts, is not the one in the GGUF). The text is
# as quoted in stored copies of that file (JSON-escaped on the HF page mirror, re-indented in
# hipfire's plan); the indentation of the last lines is a reconstruction (whitespace only:
# every tag is `{%-` / `{{-`, so the rendering is the same). llama.cpp detects it as
# LLM_CHAT_TEMPLATE_GLMEDGE ("<|assistant|>" and "<|user|>", no "</s>"), which renders
# "<|user|>\n{content}<|assistant|>": not the model's "<|user|>{content}<|endofuser|>
# <|assistant|>" (no <|endofuser|>, an extra newline) -- llama.cpp's, kept as converted.
CHAT_TEMPLATE = (
    "{%- for m in messages %}\n"
    "    {%- if m.role == 'system' %}\n"
    "        {{- '<|system|>' + m.content + '<|endofsystem|>\\n' }}\n"
    "    {%- elif m.role == 'user' %}\n"
    "        {{- '<|user|>' + m.content + '<|endofuser|>' }}\n"
    "    {%- elif m.role == 'assistant' %}\n"
    "        {{- '<|assistant|>' + m.content }}\n"
    "        {%- if not loop.last %}\n"
    "            {{- '<|endofassistant|>' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if messages[-1].role != 'assistant' %}\n"
    "    {{- '<|assistant|>' }}\n"
    "{%- endif %}"
)

# tokenizer_config eos_token <|endoftext|> (generation_config's eos is [151643, 151673]; the
# converter takes tokenizer_config's), no BOS. <|system|> / <|endofsystem|> are not tokens.
EOS = "<|endoftext|>"
ADDED: dict[str, int] = {
    **qwen_added(22),   # Qwen2.5's added tokens (<|video_pad|> 151656: video_token_id)
    # dots' (image_token_id 151665; the rest per hipfire's reading of added_tokens_decoder)
    "<|imgpad|>": 151665, "<|img|>": 151666, "<|endofimg|>": 151667,
    "<|systemprompt|>": 151668, "<|endofsystemprompt|>": 151669,
    "<|user|>": 151670, "<|endofuser|>": 151671,
    "<|assistant|>": 151672, "<|endofassistant|>": 151673,
}
# what mtmd puts around dots.ocr's image chunk (text tokens, tokenized as specials)
IMAGE_BEGIN, IMAGE_END = "<|img|>", "<|endofimg|>"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    return cut_depths(layers, S["n_layer"], S["v_layer"])


def vocab_of(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The character vocab: real size with the specials at their real ids (vocab None), or
    padded only to `vocab` (at least what the characters and specials need)."""
    S = _shape(shape)
    special = [(t, CONTROL if t.startswith("<|") else USER) for t in ADDED]
    if vocab is None:
        return char_vocab(special, S["n_vocab"], at=ADDED)
    return char_vocab(special, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer, _ = _depths(S, layers)
    n_vocab = len(vocab_of(shape, vocab)[0])
    d, ff = S["n_embd"], S["n_ff"]
    kv = S["n_head_kv"] * (d // S["n_head"])
    return dense_decoder(n_layer, n_vocab, d, ff, d, kv, S["tied_embeddings"], qkv_bias=True)


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    _, n_v = _depths(S, layers)
    vd, vff, p_ = S["v_embd"], S["v_ff"], S["v_patch"]
    d, mh = S["n_embd"], S["v_embd"] * S["merge"] ** 2
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p_, p_), F16, "w"),  # patchifier.proj
                     ("v.patch_embd.bias", (vd,), F32, "zeros"),
                     ("v.pre_ln.weight", (vd,), F32, "ones")]              # patchifier.norm
    for i in range(n_v):
        p = f"v.blk.{i}."
        t += [(p + "ln1.weight", (vd,), F32, "ones"),                 # norm1
              (p + "attn_qkv.weight", (3 * vd, vd), F16, "w"),        # attn.qkv, no bias
              (p + "attn_out.weight", (vd, vd), F16, "w"),            # attn.proj, no bias
              (p + "ln2.weight", (vd,), F32, "ones"),                 # norm2
              (p + "ffn_gate.weight", (vff, vd), F16, "w"),           # mlp.fc1
              (p + "ffn_up.weight", (vff, vd), F16, "w"),             # mlp.fc3
              (p + "ffn_down.weight", (vd, vff), F16, "w")]           # mlp.fc2
    t += [("mm.post_norm.weight", (vd,), F32, "ones"),                # post_trunk_norm
          ("mm.input_norm.weight", (vd,), F32, "ones"),               # merger.ln_q
          ("mm.input_norm.bias", (vd,), F32, "zeros"),
          ("mm.0.weight", (mh, mh), F16, "w"),                        # merger.mlp.0
          ("mm.0.bias", (mh,), F32, "zeros"),
          ("mm.2.weight", (d, mh), F16, "w"),                         # merger.mlp.2
          ("mm.2.bias", (d,), F32, "zeros")]
    return t


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)
    tokens, types = vocab_of(shape, vocab)

    def kv(w) -> None:
        a = S["arch"]
        add_llm_head(w, NAME, n_layer, S)
        w.add_float32(f"{a}.rope.freq_base", S["rope_theta"])
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", S["rms_eps"])
        w.add_uint32("general.file_type", 1)  # MOSTLY_F16
        add_char_tokenizer(w, tokens, types, bos=None, eos=EOS, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, n_v: int):
    S = _shape(shape)

    def kv(w) -> None:
        w.add_type("mmproj")
        w.add_name(NAME + " mmproj")
        w.add_uint32("general.file_type", 1)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_uint32("clip.vision.projection_dim", S["n_embd"])
        w.add_uint32("clip.vision.image_size", 0)       # converter: dynamic resolution
        w.add_uint32("clip.vision.patch_size", S["v_patch"])
        w.add_uint32("clip.vision.embedding_length", S["v_embd"])
        w.add_uint32("clip.vision.feed_forward_length", S["v_ff"])
        w.add_uint32("clip.vision.block_count", n_v)
        w.add_uint32("clip.vision.attention.head_count", S["v_head"])
        w.add_array("clip.vision.image_mean", S["image_mean"])
        w.add_array("clip.vision.image_std", S["image_std"])
        w.add_string("clip.projector_type", S["projector_type"])
        w.add_uint32("clip.vision.image_min_pixels", S["min_pixels"])
        w.add_uint32("clip.vision.image_max_pixels", S["max_pixels"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
        w.add_uint32("clip.vision.projector.scale_factor", S["merge"])
        w.add_bool("clip.use_silu", True)
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    text = text_tensors(shape, layers, vocab)
    return ((_shape(shape)["arch"], text, _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "dots-ocr", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "dots-ocr", layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def image_tokens(width: int, height: int, shape: str = "dots-ocr") -> int:
    """Image rows mtmd makes of a width x height page (mtmd_image_preprocessor_dyn_size, i.e.
    Qwen2-VL's smart_resize with factor 28 and min/max pixels): one row per merged 2x2 patch."""
    import math

    S = _shape(shape)
    f = S["v_patch"] * S["merge"]
    w = max(f, round(width / f) * f)
    h = max(f, round(height / f) * f)
    if w * h > S["max_pixels"]:
        beta = math.sqrt(width * height / S["max_pixels"])
        w = max(f, math.floor(width / beta / f) * f)
        h = max(f, math.floor(height / beta / f) * f)
    elif w * h < S["min_pixels"]:
        beta = math.sqrt(S["min_pixels"] / (width * height))
        w = math.ceil(width * beta / f) * f
        h = math.ceil(height * beta / f) * f
    return (w // f) * (h // f)
