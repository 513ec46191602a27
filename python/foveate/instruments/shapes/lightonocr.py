"""LightOnOCR (lightonai/LightOnOCR-1B-1025, LightOnOCR-2-1B): random weights, real shapes.

What llama.cpp's converter (conversion/lighton_ocr.py, a LlavaVisionModel with
`use_break_tok = False`, + conversion/qwen.py Qwen3Model for `text_config.architectures =
["Qwen3ForCausalLM"]`) makes of the checkpoint:

* text GGUF: LLM arch `qwen3` (Qwen3-0.6B-sized decoder: 28 layers of 1024, 16 query heads
  of 128 over 8 KV heads, per-head q/k RMSNorm, SwiGLU 3072, NEOX RoPE theta 1e6), tied
  embeddings, so no `output.weight` (llama.cpp reuses `token_embd.weight`): 310 tensors;
* mmproj GGUF: projector `lightonocr`: the Pixtral / Mistral-Small-3.1 vision encoder (patch
  14, 24 layers of 1024, 16 heads of 64, RMSNorm, SiLU-gated FFN 4096, 2-D RoPE theta 1e4,
  no learned position embedding), then `mm.input_norm` (RMSNorm), the 2x2 patch merger
  (`mm.patch_merger`, 4096 -> 1024, no bias) and a GELU MLP `mm.1` / `mm.2` (no biases):
  222 tensors.

mtmd (tools/mtmd/mtmd.cpp, clip.cpp) for this projector: the page is scaled so its longest
edge is `clip.vision.image_size` (1540; small pages are scaled *up*), each side rounded up to
a multiple of 28 (patch 14 x merge 2) with bicubic resampling; the image chunk is
(W/28) x (H/28) rows with no [IMG_BREAK] rows (the converter writes no `v.token_embd.img_break`
for LightOnOCR) and no learned marker rows; mtmd wraps the chunk in the *text* tokens
`<|im_start|>` ... `<|im_end|>`. Positions are 1-D (mtmd pos type NORMAL, one position per
image row, consecutive).

Only the tokenizer differs from the real model: a character-level SentencePiece vocab
(gguf_specs.char_vocab) with Qwen's special tokens at their real ids (151643..151668), padded
with unused tokens to the real 151936, instead of Qwen's byte-level BPE (`gpt2`, pre `qwen2`).
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (cut_depths, CONTROL, F16, F32, USER, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, dense_decoder, pick_shape, qwen_added,
                         write_pair_files, pair_sizes)

# The real numbers. Sources: LightOnOCR-2-1B config.json / processor_config.json /
# chat_template.jinja as uploaded from the HF repo (stored copy: github Moobbot/LightOnOCR-2-1B,
# commit 0f36139 "Upload folder using huggingface_hub"), the same values as transformers'
# LightOnOCRConfig defaults (models/lightonocr/modular_lightonocr.py), and llama.cpp's
# converter/loader in this tree.
LIGHTONOCR_1B: dict = {
    # --- text decoder: config.json text_config (Qwen3ForCausalLM) -> LLM arch qwen3
    "arch": "qwen3",
    "n_vocab": 151936,           # text_config.vocab_size
    "n_embd": 1024,              # text_config.hidden_size
    "n_layer": 28,               # text_config.num_hidden_layers
    "n_head": 16,                # text_config.num_attention_heads
    "n_head_kv": 8,              # text_config.num_key_value_heads
    "head_dim": 128,             # text_config.head_dim (q is 16 x 128 = 2048 wide)
    "n_ff": 3072,                # text_config.intermediate_size
    "n_ctx_train": 16384,        # text_config.max_position_embeddings (2-1B's config; the
                                 # transformers default config says 40960: 1B-1025's own
                                 # config.json was not readable here, a guess that it matches)
    "rope_theta": 1_000_000.0,   # text_config.rope_theta
    "rms_eps": 1e-6,             # text_config.rms_norm_eps
    "tied_embeddings": True,     # text_config.tie_word_embeddings: no output.weight
    # --- projector: config.json vision_config (pixtral) + processor_config.json
    "projector_type": "lightonocr",
    "v_image_size": 1540,        # vision_config.image_size (= processor longest_edge 1540)
    "v_patch": 14,               # vision_config.patch_size
    "v_embd": 1024,              # vision_config.hidden_size
    "v_layer": 24,               # vision_config.num_hidden_layers
    "v_head": 16,                # vision_config.num_attention_heads (head_dim 64)
    "v_ff": 4096,                # vision_config.intermediate_size (a later commit of that
                                 # stored copy edits it to 8192 locally; the upload and
                                 # transformers' default say 4096)
    "v_eps": 1e-5,               # not in config.json: the converter's pixtral default
                                 # (LlavaVisionModel: layer_norm_eps = 1e-5)
    "v_act_silu": True,          # vision_config.hidden_act = "silu" -> clip.use_silu
    "merge": 2,                  # config.json spatial_merge_size -> clip.vision.spatial_merge_size
    "image_mean": [0.48145466, 0.4578275, 0.40821073],  # processor_config image_mean
    "image_std": [0.26862954, 0.26130258, 0.27577711],   # processor_config image_std
    # published size: "1B" (model card); tensors here: ~596M text + ~410M projector
}

SHAPES: dict[str, dict] = {"lightonocr-1b": LIGHTONOCR_1B}

NAME = "foveate-lightonocr-shape (random weights)"

# The real template, verbatim: chat_template.jinja of LightOnOCR-2-1B (also
# tokenizer_config.json's chat_template; the converter stores tokenizer_config's). llama.cpp
# detects it as LLM_CHAT_TEMPLATE_CHATML (it contains "<|im_start|>"), so foveate's
# llama_chat_apply_template gives "<|im_start|>user\n{marker}\n{prompt}<|im_end|>\n
# <|im_start|>assistant\n" (llama.cpp's ChatML has no empty system turn, the jinja has).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}\n"
    "{% for message in messages %}\n"
    "{% if loop.first and message['role'] != 'system' %}\n"
    "<|im_start|>system<|im_end|>\n"
    "{% endif %}\n"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}\n"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}\n"
    "{% for content in message['content'] %}\n"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}\n"
    "{% set image_count.value = image_count.value + 1 %}\n"
    "{% if add_vision_id %}\n"
    "Picture {{ image_count.value }}:\n"
    "{% endif -%}\n"
    "<|image_pad|>\n"
    "{%- elif 'text' in content %}\n"
    "{{ content['text'] }}\n"
    "{% endif %}\n"
    "{% endfor %}\n"
    "<|im_end|>\n"
    "{% endif %}\n"
    "{% endfor %}\n"
    "{% if add_generation_prompt %}\n"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

# Qwen's added tokens at their real ids (added_tokens.json of LightOnOCR-2-1B). The "<|...|>"
# ones are special (control); <tool_call> / <think> etc. are not special in Qwen3 (user).
EOS, PAD = "<|im_end|>", "<|endoftext|>"   # tokenizer_config eos_token / pad_token; no BOS
ADDED: dict[str, int] = qwen_added()   # Qwen3's 26
# what mtmd puts around LightOnOCR's image chunk (text tokens, tokenized as specials)
IMAGE_BEGIN, IMAGE_END = "<|im_start|>", "<|im_end|>"


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
    d, ff, hd = S["n_embd"], S["n_ff"], S["head_dim"]
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    return dense_decoder(n_layer, n_vocab, d, ff, q, kv, S["tied_embeddings"],
                         qk_norm=("q", "k"), head_dim=hd)


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    _, n_v = _depths(S, layers)
    vd, vff, p_, m = S["v_embd"], S["v_ff"], S["v_patch"], S["merge"]
    d = S["n_embd"]
    # patch_conv has no bias (Pixtral); ln_pre is an RMSNorm (weight only)
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p_, p_), F16, "w"),
                     ("v.pre_ln.weight", (vd,), F32, "ones")]
    for i in range(n_v):
        p = f"v.blk.{i}."
        t += [(p + "ln1.weight", (vd,), F32, "ones"),          # attention_norm
              (p + "attn_q.weight", (vd, vd), F16, "w"),
              (p + "attn_k.weight", (vd, vd), F16, "w"),
              (p + "attn_v.weight", (vd, vd), F16, "w"),
              (p + "attn_out.weight", (vd, vd), F16, "w"),
              (p + "ln2.weight", (vd,), F32, "ones"),          # ffn_norm
              (p + "ffn_gate.weight", (vff, vd), F16, "w"),
              (p + "ffn_up.weight", (vff, vd), F16, "w"),
              (p + "ffn_down.weight", (vd, vff), F16, "w")]
    t += [("mm.input_norm.weight", (vd,), F32, "ones"),       # vision_projection.norm
          ("mm.patch_merger.weight", (vd, vd * m * m), F16, "w"),  # merging_layer, no bias
          ("mm.1.weight", (d, vd), F16, "w"),                  # linear_1, no bias
          ("mm.2.weight", (d, d), F16, "w")]                   # linear_2, no bias
    return t


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)
    tokens, types = vocab_of(shape, vocab)

    def kv(w) -> None:
        a = S["arch"]
        add_llm_head(w, NAME, n_layer, S)
        w.add_float32(f"{a}.rope.freq_base", S["rope_theta"])
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", S["rms_eps"])
        w.add_uint32(f"{a}.attention.key_length", S["head_dim"])
        w.add_uint32(f"{a}.attention.value_length", S["head_dim"])
        w.add_uint32("general.file_type", 1)  # MOSTLY_F16
        add_char_tokenizer(w, tokens, types, bos=None, eos=EOS, pad=PAD, add_bos=False)
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
        w.add_uint32("clip.vision.image_size", S["v_image_size"])
        w.add_uint32("clip.vision.patch_size", S["v_patch"])
        w.add_uint32("clip.vision.embedding_length", S["v_embd"])
        w.add_uint32("clip.vision.feed_forward_length", S["v_ff"])
        w.add_uint32("clip.vision.block_count", n_v)
        w.add_uint32("clip.vision.attention.head_count", S["v_head"])
        w.add_array("clip.vision.image_mean", S["image_mean"])
        w.add_array("clip.vision.image_std", S["image_std"])
        # the converter writes "pixtral" here first (LlavaVisionModel), then overwrites it
        w.add_string("clip.projector_type", S["projector_type"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
        w.add_bool("clip.use_silu", S["v_act_silu"])
        w.add_uint32("clip.vision.spatial_merge_size", S["merge"])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    text = text_tensors(shape, layers, vocab)
    return ((_shape(shape)["arch"], text, _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "lightonocr-1b", layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "lightonocr-1b", layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def image_tokens(width: int, height: int, shape: str = "lightonocr-1b") -> int:
    """Image rows mtmd makes of a width x height page, from mtmd's rule for this projector
    (mtmd_image_preprocessor_longest_edge): scale so the longest edge is image_size, ceil each
    side to patch x merge, one row per merged 2x2 patch; no break / end rows."""
    import math

    S = _shape(shape)
    f = S["v_patch"] * S["merge"]
    scale = min(S["v_image_size"] / width, S["v_image_size"] / height)
    w = math.ceil(width * scale / f) * f
    h = math.ceil(height * scale / f) * f
    return (w // f) * (h // f)
