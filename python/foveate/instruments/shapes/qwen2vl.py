"""Random-weight GGUF pairs with the exact shapes of Qwen2-VL (Qwen/Qwen2-VL-2B-Instruct,
Qwen/Qwen2-VL-7B-Instruct), as llama.cpp's converter (conversion/qwenvl.py: Qwen2VLModel,
Qwen2VLVisionModel, on conversion/base.py) writes them.

* text model: llama.cpp arch `qwen2vl` (src/models/qwen2vl.cpp), the Qwen2 decoder (GQA,
  q/k/v biases, SwiGLU) with M-RoPE: rope type LLAMA_ROPE_TYPE_MROPE, sections
  (t, h, w, extra) = (16, 24, 24, 0) of the 64 rotary pairs of a 128-wide head, theta 1e6.
  mtmd gives image tokens 4 positions each (t, y, x, 0) and advances n_past by
  max(grid h, grid w) for the image, not by its token count.
* projector: mtmd projector type `qwen2vl_merger` (tools/mtmd/models/qwen2vl.cpp): a
  675M-parameter ViT (32 layers of 1280, 16 heads, patch 14, the HF Conv3d patch embedding
  split by the converter into two Conv2d kernels `v.patch_embd.weight` / `.weight.1`),
  LayerNorm with bias (Qwen2-VL; Qwen2.5-VL's is RMSNorm), QuickGELU MLP (no use_gelu /
  use_silu key: clip.cpp's default gelu_quick), 2-D M-RoPE in the ViT, no window attention,
  then the merger: LayerNorm, 2x2 patches concatenated (5120), Linear 5120->5120, GELU,
  Linear 5120->n_embd. Tokens are resized to multiples of 28 px (patch 14 x merge 2).

Converter quirks kept as converted: `clip.vision.feed_forward_length` is the vision config's
`hidden_size` (1536 / 3584, the *merger's output* width; conversion renames embed_dim ->
hidden_size and hidden_size -> intermediate_size), not the MLP's 5120; clip.cpp sizes the
MLP from its tensors and ignores it. `clip.vision.image_size` is the converter's default 560
(Qwen2-VL has no fixed size). No spatial_merge_size key (clip.cpp defaults n_merge to 2).

Image markers: mtmd wraps each image in the text tokens "<|vision_start|>" ... "<|vision_end|>"
(mtmd.cpp, PROJECTOR_TYPE_QWEN2VL); they are ordinary control tokens of the LLM vocab
(learned rows of token_embd), *outside* the image chunk. The image chunk itself is only
merged patch embeddings (grid w/28 x h/28, row-major), with no newline / separator rows.
"<|image_pad|>" is HF's placeholder; llama.cpp never emits it.

Fine-tunes on this architecture (same projector `qwen2vl_merger`, same text arch): olmOCR v0.1
(allenai/olmOCR-7B-0225-preview, a Qwen2-VL-7B-Instruct fine-tune, HF model_type qwen2_vl;
the later olmOCR-7B-0725/0825 and olmOCR-2 are Qwen2.5-VL-7B) and MinerU2.5
(opendatalab/MinerU2.5-2509-1.2B, Qwen2VLForConditionalGeneration with its own, smaller
sizes: not one of these shapes). Nanonets-OCR-s is a Qwen2.5-VL-3B fine-tune
(qwen2.5vl_merger, see tiny_model.py), not this family.

Only the tokenizer differs from the real model: the real one is Qwen2's byte-level BPE
(`gpt2`, pre `qwen2`); here it is a character-level SentencePiece vocab with Qwen's special
tokens at their real ids (151643 <|endoftext|> ... 151656 <|video_pad|>), padded with unused
tokens to the real vocab size. The chat template is Qwen2-VL-Instruct's own (llama.cpp
detects it as LLM_CHAT_TEMPLATE_CHATML; note that llama.cpp's chatml formatter does not add
the template's default "You are a helpful assistant." system turn).

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (cut_depths, CONTROL, F16, UNKNOWN, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, dense_decoder, pick_shape, qwen_added, qwen_vl_merger,
                         vit_blocks, write_pair_files, pair_sizes)

ARCH = "qwen2vl"
PROJECTOR = "qwen2vl_merger"

# Shared by both sizes: vision_config of Qwen2-VL-{2B,7B}-Instruct config.json (identical in
# both but for hidden_size, the merger's output) and preprocessor_config.json.
_VISION = {
    "v_embd": 1280,          # vision_config.embed_dim
    "v_layer": 32,           # vision_config.depth
    "v_head": 16,            # vision_config.num_heads
    "v_ff": 5120,            # embed_dim * vision_config.mlp_ratio (4)
    "patch": 14,             # vision_config.patch_size (temporal_patch_size 2: two kernels)
    "merge": 2,              # vision_config.spatial_merge_size
    "image_size": 560,       # not in the config: the converter's default (qwenvl.py)
    "v_eps": 1e-6,           # global rms_norm_eps, written as the vision LayerNorm eps
    # preprocessor_config.json: OpenAI CLIP mean / std
    "image_mean": (0.48145466, 0.4578275, 0.40821073),
    "image_std": (0.26862954, 0.26130258, 0.27577711),
}

# Text numbers: config.json of each model. The 2B numbers are checked against the parameter
# count of the published checkpoint (model.safetensors.index.json total_size 4,417,971,200
# bytes of bf16 = 2,208,985,600 parameters, text + vision, tied embeddings), the 7B ones
# against its published 8,291,375,616 (untied lm_head).
SHAPES: dict[str, dict] = {
    "qwen2-vl-2b": {
        "hf": "Qwen/Qwen2-VL-2B-Instruct",
        "n_vocab": 151936,       # vocab_size (tokenizer 151657 + padding to 151936)
        "n_embd": 1536,          # hidden_size (= vision_config.hidden_size, merger output)
        "n_layer": 28,           # num_hidden_layers
        "n_head": 12,            # num_attention_heads (head 128)
        "n_head_kv": 2,          # num_key_value_heads
        "n_ff": 8960,            # intermediate_size
        "n_ctx_train": 32768,    # max_position_embeddings
        "rope_theta": 1e6,       # rope_theta
        "rms_eps": 1e-6,         # rms_norm_eps
        "mrope_sections": (16, 24, 24, 0),  # rope_scaling.mrope_section, padded to 4
        "tied": True,            # tie_word_embeddings: no output.weight
        "params": 2_208_985_600,  # published total (text + vision)
        **_VISION,
    },
    "qwen2-vl-7b": {
        "hf": "Qwen/Qwen2-VL-7B-Instruct",
        "n_vocab": 152064,       # vocab_size
        "n_embd": 3584,          # hidden_size (= vision_config.hidden_size)
        "n_layer": 28,           # num_hidden_layers
        "n_head": 28,            # num_attention_heads (head 128)
        "n_head_kv": 4,          # num_key_value_heads
        "n_ff": 18944,           # intermediate_size
        "n_ctx_train": 32768,    # max_position_embeddings
        "rope_theta": 1e6,       # rope_theta
        "rms_eps": 1e-6,         # rms_norm_eps
        "mrope_sections": (16, 24, 24, 0),  # rope_scaling.mrope_section, padded to 4
        "tied": False,           # tie_word_embeddings false: output.weight stored
        "params": 8_291_375_616,  # published total (text + vision)
        **_VISION,
    },
}

# Qwen2-VL-Instruct's chat_template (chat_template.json / tokenizer_config.json), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2 tokenizer's added tokens (tokenizer_config.json added_tokens_decoder), real ids
SPECIAL_IDS = qwen_added(14)
# the real vocab has no <unk>; the SentencePiece-type char vocab needs one
SPECIAL = [("<unk>", UNKNOWN)] + [(t, CONTROL) for t in SPECIAL_IDS]
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"  # config.json bos / eos, pad

NAME = "foveate-{shape}-shape (random weights)"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text, vision) layer counts; `layers` caps both."""
    return cut_depths(layers, S["n_layer"], S["v_layer"])


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: real size and real special-token ids, or padded to `vocab` only
    (then the special tokens come first, wherever the real ids do not fit)."""
    S = _shape(shape)
    n = S["n_vocab"] if vocab is None else vocab
    at = SPECIAL_IDS if n > max(SPECIAL_IDS.values()) else None
    return char_vocab(SPECIAL, n, at=at)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]
    n_vocab = len(vocab_tokens(shape, vocab)[0])
    d, ff = S["n_embd"], S["n_ff"]
    kv = d // S["n_head"] * S["n_head_kv"]
    return dense_decoder(n_layer, n_vocab, d, ff, d, kv, S["tied"],
                         qkv_bias=True)   # o_proj: no bias


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    vd, vff, p, out = S["v_embd"], S["v_ff"], S["patch"], S["n_embd"]
    return ([("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),     # Conv3d frame 0
             ("v.patch_embd.weight.1", (vd, 3, p, p), F16, "w")]   # frame 1 (forced F16)
            + vit_blocks(n_v, vd, vff)                     # qkv split by the converter; mlp.fc1 / 2
            + qwen_vl_merger(vd, S["merge"], out))         # merger.ln_q, mlp.0, mlp.2 (5120 wide)


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_dimension_sections(list(S["mrope_sections"]))
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
        w.add_clip_has_vision_encoder(True)
        w.add_vision_projection_dim(S["n_embd"])
        w.add_vision_image_size(S["image_size"])
        w.add_vision_patch_size(S["patch"])
        w.add_vision_embedding_length(S["v_embd"])
        w.add_vision_feed_forward_length(S["n_embd"])    # converter quirk, see the docstring
        w.add_vision_block_count(n_v)
        w.add_vision_head_count(S["v_head"])
        w.add_vision_image_mean(list(S["image_mean"]))
        w.add_vision_image_std(list(S["image_std"]))
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_attention_layernorm_eps(S["v_eps"])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str, layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str, layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))
