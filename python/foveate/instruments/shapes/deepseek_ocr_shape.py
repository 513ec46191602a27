"""Write random-weight GGUFs with the exact shapes of DeepSeek-OCR (deepseek-ai/DeepSeek-OCR).

The pair takes the same llama.cpp / mtmd code paths as a converted DeepSeek-OCR:

* text model: llama.cpp arch `deepseek2-ocr`, the DeepSeek-V2 MoE decoder without MLA
  (plain multi-head attention, 10 heads of 128, NEOX RoPE with theta 10000; layer 0 has a
  dense SwiGLU FFN, layers 1-11 have 64 routed experts, 6 used, + 2 shared experts stored
  merged as one 1792-wide FFN);
* projector: mtmd projector type `deepseekocr`: SAM ViT-B (1024 px input, patch 16, 12
  layers with 14x14 windows, global attention at layers 2, 5, 8, 11, neck 768 -> 256,
  net_2 -> 512, net_3 -> 1024 channels at 16x16), then CLIP-L/14 (24 layers of 1024 on the
  SAM features + CLS), CLIP and SAM features concatenated (2048) and projected linearly to
  1280, with an `image_newline` after each row of tokens and a `view_seperator` (sic) after
  the global view.

Tensor names, shapes and storage types follow llama.cpp's converter (conversion/deepseek.py
+ conversion/base.py) as built into this tree: 155 tensors in the text GGUF, 476 in the
mmproj, F16 weights with the converter's F32 exceptions (norms, biases, the MoE router,
SAM pos/rel-pos embeddings, the SAM neck and net_2/net_3 convolutions, the CLIP
embeddings). Metadata follows converted files too, including two converter quirks that
llama.cpp ignores: `deepseek2-ocr.rope.dimension_count = 0` (from qk_rope_head_dim = 0; the
OCR graph ropes the full head of n_embd / n_head = 128 itself) and
`clip.vision.feed_forward_length = 64` (heads * 4; the FFN width used is the tensors' 4096).
clip.cpp hard-codes the SAM input (1024 px, patch 16) and the CLIP eps (1e-5) for this
projector, so `clip.vision.image_size` / `patch_size` (224 / 14, CLIP-L's) are only
informative.

Only the tokenizer differs from the real model: the real one is a 129280-entry byte-level BPE
(`gpt2`, pre `deepseek-v3`); here it is a character-level SentencePiece vocab (as in
tiny_model.py) with DeepSeek's special tokens at their real ids (BOS 0, EOS 1, PAD 2), padded
with unused tokens to the real vocab size so embedding and output layers cost the same.
DeepSeek-OCR's mtmd path needs no image marker tokens: mtmd puts nothing before the image
embeddings and a "\\n" after them, and the chat template (`deepseek-ocr`) is the bare user
text, e.g. "<image>\\nFree OCR." with the image marker in front.

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from .gguf_specs import add_llm_head, gguf_size, write_gguf

# Real numbers (deepseek-ai/DeepSeek-OCR config.json: language_config and vision_config,
# checked against llama.cpp's loader: src/models/deepseek2ocr.cpp, tools/mtmd/clip.cpp).
DEEPSEEK_OCR_SHAPE: dict = {
    # text decoder (llama.cpp arch deepseek2-ocr)
    "arch": "deepseek2-ocr",
    "n_vocab": 129280,
    "n_embd": 1280,
    "n_layer": 12,
    "n_head": 10,
    "n_head_kv": 10,             # no GQA, no MLA
    "head_dim": 128,             # n_embd / n_head
    "n_ff": 6848,                # dense FFN (layer 0)
    "n_layer_dense_lead": 1,     # first_k_dense_replace
    "n_expert": 64,
    "n_expert_used": 6,
    "n_expert_shared": 2,
    "n_ff_exp": 896,             # per expert; the 2 shared experts are one 1792-wide FFN
    "n_ctx_train": 8192,
    "rope_theta": 10000.0,
    "rms_eps": 1e-6,
    # projector (mtmd projector type deepseekocr)
    "projector_type": "deepseekocr",
    "sam_image_size": 1024,
    "sam_patch": 16,
    "sam_embd": 768,
    "sam_layers": 12,
    "sam_heads": 12,
    "sam_ff": 3072,
    "sam_window": 14,
    "sam_global_layers": (2, 5, 8, 11),
    "sam_neck": 256,
    "sam_net_2": 512,
    "sam_net_3": 1024,
    "clip_embd": 1024,
    "clip_layers": 24,
    "clip_heads": 16,
    "clip_ff": 4096,
    "clip_patch": 14,            # patch_embd is stored but unused: CLIP reads SAM's features
    "clip_image_size": 224,      # 16x16 positions + CLS = 257
    "proj_in": 2048,             # CLIP 1024 + SAM 1024
    "proj_out": 1280,
    "tile_size": 640,            # large pages: 2..9 tiles of 640 px + the 1024 px global view
    "min_tiles": 2,
    "max_tiles": 9,
    "image_tokens_global": 273,  # 16 rows x (16 + newline) + view separator
}

S = DEEPSEEK_OCR_SHAPE
NAME = "foveate-deepseek-ocr-shape (random weights)"
# what llama.cpp's converter writes for DeepSeek-OCR (a jinja template llama.cpp does not
# recognise; llama-mtmd-cli is run with --chat-template deepseek-ocr, which is the bare text)
CHAT_TEMPLATE = "{% for m in messages %}{{m['content']}}{% endfor %}"

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
# token types (llama.cpp LLAMA_TOKEN_TYPE_*): 1 normal, 2 unknown, 3 control,
# 4 user defined, 5 unused, 6 byte
_NORMAL, _UNKNOWN, _CONTROL, _USER, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
SPECIAL = [(BOS, _CONTROL), (EOS, _CONTROL), (PAD, _CONTROL), ("<unk>", _UNKNOWN),
           ("<image>", _USER), ("<|grounding|>", _CONTROL), ("<|ref|>", _CONTROL),
           ("<|/ref|>", _CONTROL), ("<|det|>", _CONTROL), ("<|/det|>", _CONTROL)]

F16, F32 = np.float16, np.float32


def char_vocab(n_vocab: int = S["n_vocab"]) -> tuple[list[str], list[int]]:
    """DeepSeek's special tokens (BOS 0, EOS 1, PAD 2), single characters, byte fallback,
    then unused tokens up to n_vocab."""
    tokens = [t for t, _ in SPECIAL]
    types = [k for _, k in SPECIAL]
    for ch in ["\u2581", "\n"] + [c for c in string.printable
                                  if c.strip() and c not in "\t\n\r\x0b\x0c"]:
        tokens.append(ch)
        types.append(_NORMAL)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(_BYTE)
    for i in range(len(tokens), n_vocab):
        tokens.append(f"<unused_{i}>")
        types.append(_UNUSED)
    return tokens, types


# clip.cpp hard-codes the SAM global-attention layers (2, 5, 8, 11) and aborts when the graph
# has none ("Failed to get tensor rel_pos_indices_global"): SAM needs at least 3 layers.
MIN_SAM_LAYERS = 3


def _depths(layers: int | None) -> tuple[int, int, int]:
    """(text, SAM, CLIP) layer counts; `layers` caps all three (SAM at MIN_SAM_LAYERS or more)."""
    if layers is None:
        return S["n_layer"], S["sam_layers"], S["clip_layers"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return (min(layers, S["n_layer"]), min(max(layers, MIN_SAM_LAYERS), S["sam_layers"]),
            min(layers, S["clip_layers"]))


# A tensor spec: (name, numpy shape, dtype, init) with init "w" (normal, std 0.02),
# "ones" or "zeros". numpy shapes are ggml's ne reversed.
def text_tensors(layers: int | None = None) -> list[tuple[str, tuple, type, str]]:
    n_layer = _depths(layers)[0]
    d, ff, ffe = S["n_embd"], S["n_ff"], S["n_ff_exp"]
    ne, nsh = S["n_expert"], S["n_expert_shared"]
    t = [("token_embd.weight", (S["n_vocab"], d), F16, "w")]
    for i in range(n_layer):
        p = f"blk.{i}."
        t.append((p + "attn_norm.weight", (d,), F32, "ones"))
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t.append((p + n + ".weight", (d, d), F16, "w"))
        t.append((p + "ffn_norm.weight", (d,), F32, "ones"))
        if i < S["n_layer_dense_lead"]:
            t += [(p + "ffn_gate.weight", (ff, d), F16, "w"),
                  (p + "ffn_up.weight", (ff, d), F16, "w"),
                  (p + "ffn_down.weight", (d, ff), F16, "w")]
        else:
            t += [(p + "ffn_gate_inp.weight", (ne, d), F32, "w"),   # router: F32, as converted
                  (p + "ffn_gate_exps.weight", (ne, ffe, d), F16, "w"),
                  (p + "ffn_up_exps.weight", (ne, ffe, d), F16, "w"),
                  (p + "ffn_down_exps.weight", (ne, d, ffe), F16, "w"),
                  (p + "ffn_gate_shexp.weight", (ffe * nsh, d), F16, "w"),
                  (p + "ffn_up_shexp.weight", (ffe * nsh, d), F16, "w"),
                  (p + "ffn_down_shexp.weight", (d, ffe * nsh), F16, "w")]
    t += [("output_norm.weight", (d,), F32, "ones"),
          ("output.weight", (S["n_vocab"], d), F16, "w")]  # untied lm_head
    return t


def mmproj_tensors(layers: int | None = None) -> list[tuple[str, tuple, type, str]]:
    _, n_sam, n_clip = _depths(layers)
    sd, sff, sp = S["sam_embd"], S["sam_ff"], S["sam_patch"]
    grid = S["sam_image_size"] // sp                  # 64
    head = sd // S["sam_heads"]                        # 64
    neck, n2, n3 = S["sam_neck"], S["sam_net_2"], S["sam_net_3"]
    cd, cff, cp = S["clip_embd"], S["clip_ff"], S["clip_patch"]
    n_pos = (S["clip_image_size"] // cp) ** 2 + 1      # 257

    t = [("v.sam.patch_embd.weight", (sd, 3, sp, sp), F16, "w"),
         ("v.sam.patch_embd.bias", (sd,), F32, "zeros"),
         ("v.sam.pos_embd.weight", (1, grid, grid, sd), F32, "w")]
    for i in range(n_sam):
        p = f"v.sam.blk.{i}."
        # relative positions span 2 * size - 1: the 14x14 window, or the whole 64x64 grid
        rel = 2 * (grid if i in S["sam_global_layers"] else S["sam_window"]) - 1
        t += [(p + "pre_ln.weight", (sd,), F32, "ones"),
              (p + "pre_ln.bias", (sd,), F32, "zeros"),
              (p + "attn.qkv.weight", (3 * sd, sd), F16, "w"),
              (p + "attn.qkv.bias", (3 * sd,), F32, "zeros"),
              (p + "attn.out.weight", (sd, sd), F16, "w"),
              (p + "attn.out.bias", (sd,), F32, "zeros"),
              (p + "attn.pos_h.weight", (rel, head), F32, "w"),
              (p + "attn.pos_w.weight", (rel, head), F32, "w"),
              (p + "post_ln.weight", (sd,), F32, "ones"),
              (p + "post_ln.bias", (sd,), F32, "zeros"),
              (p + "mlp.lin1.weight", (sff, sd), F16, "w"),
              (p + "mlp.lin1.bias", (sff,), F32, "zeros"),
              (p + "mlp.lin2.weight", (sd, sff), F16, "w"),
              (p + "mlp.lin2.bias", (sd,), F32, "zeros")]
    t += [("v.sam.neck.0.weight", (neck, sd, 1, 1), F32, "w"),
          ("v.sam.neck.1.weight", (neck,), F32, "ones"),
          ("v.sam.neck.1.bias", (neck,), F32, "zeros"),
          ("v.sam.neck.2.weight", (neck, neck, 3, 3), F32, "w"),
          ("v.sam.neck.3.weight", (neck,), F32, "ones"),
          ("v.sam.neck.3.bias", (neck,), F32, "zeros"),
          ("v.sam.net_2.weight", (n2, neck, 3, 3), F32, "w"),
          ("v.sam.net_3.weight", (n3, n2, 3, 3), F32, "w")]
    t += [("v.class_embd", (cd,), F32, "w"),
          ("v.patch_embd.weight", (cd, 3, cp, cp), F32, "w"),
          ("v.position_embd.weight", (n_pos, cd), F32, "w"),
          ("v.pre_ln.weight", (cd,), F32, "ones"),
          ("v.pre_ln.bias", (cd,), F32, "zeros")]
    for i in range(n_clip):
        p = f"v.blk.{i}."
        t += [(p + "ln1.weight", (cd,), F32, "ones"),
              (p + "ln1.bias", (cd,), F32, "zeros"),
              (p + "attn_qkv.weight", (3 * cd, cd), F16, "w"),
              (p + "attn_qkv.bias", (3 * cd,), F32, "zeros"),
              (p + "attn_out.weight", (cd, cd), F16, "w"),
              (p + "attn_out.bias", (cd,), F32, "zeros"),
              (p + "ln2.weight", (cd,), F32, "ones"),
              (p + "ln2.bias", (cd,), F32, "zeros"),
              (p + "ffn_up.weight", (cff, cd), F16, "w"),
              (p + "ffn_up.bias", (cff,), F32, "zeros"),
              (p + "ffn_down.weight", (cd, cff), F16, "w"),
              (p + "ffn_down.bias", (cd,), F32, "zeros")]
    t += [("mm.model.fc.weight", (S["proj_out"], S["proj_in"]), F16, "w"),
          ("mm.model.fc.bias", (S["proj_out"],), F32, "zeros"),
          ("v.image_newline", (S["proj_out"],), F32, "w"),
          ("v.view_seperator", (1, S["proj_out"]), F32, "w")]
    return t


def _text_kv(w, n_layer: int) -> None:
    import gguf

    tokens, types = char_vocab()
    add_llm_head(w, NAME, n_layer, S)
    w.add_layer_norm_rms_eps(S["rms_eps"])
    w.add_expert_used_count(S["n_expert_used"])
    w.add_expert_group_count(1)
    w.add_expert_group_used_count(1)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_leading_dense_block_count(S["n_layer_dense_lead"])
    w.add_vocab_size(S["n_vocab"])
    w.add_expert_feed_forward_length(S["n_ff_exp"])
    w.add_expert_count(S["n_expert"])
    w.add_expert_shared_count(S["n_expert_shared"])
    # as converted (qk_rope_head_dim = 0); the deepseek2-ocr graph ropes head_dim = 128 with
    # theta 10000 (llama.cpp's default freq_base, which that graph asserts) regardless
    w.add_rope_dimension_count(0)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_pad_token_id(2)
    w.add_unk_token_id(tokens.index("<unk>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHAT_TEMPLATE)


def _mmproj_kv(w, n_sam: int, n_clip: int) -> None:
    import gguf

    w.add_type("mmproj")
    w.add_name(NAME + " mmproj")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_uint32("clip.vision.projection_dim", S["proj_out"])
    w.add_uint32("clip.vision.image_size", S["clip_image_size"])
    w.add_uint32("clip.vision.patch_size", S["clip_patch"])
    w.add_uint32("clip.vision.embedding_length", S["clip_embd"])
    w.add_uint32("clip.vision.feed_forward_length", S["clip_heads"] * 4)  # converter quirk
    w.add_uint32("clip.vision.block_count", n_clip)
    w.add_uint32("clip.vision.attention.head_count", S["clip_heads"])
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_string("clip.projector_type", S["projector_type"])
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.projector.scale_factor", 1)
    w.add_uint32("clip.vision.window_size", S["sam_window"])
    w.add_uint32("clip.vision.preproc_min_tiles", S["min_tiles"])
    w.add_uint32("clip.vision.preproc_max_tiles", S["max_tiles"])
    w.add_uint32("clip.vision.sam.block_count", n_sam)
    w.add_uint32("clip.vision.sam.embedding_length", S["sam_embd"])
    w.add_uint32("clip.vision.sam.head_count", S["sam_heads"])


def _write(path: Path, arch: str, specs, kv, seed: int) -> Path:
    return write_gguf(path, arch, specs, kv, seed)


def write_deepseek_ocr_text(path, layers: int | None = None, seed: int = 0) -> Path:
    n_layer = _depths(layers)[0]
    return _write(Path(path), S["arch"], text_tensors(layers),
                  lambda w: _text_kv(w, n_layer), seed)


def write_deepseek_ocr_mmproj(path, layers: int | None = None, seed: int = 1) -> Path:
    _, n_sam, n_clip = _depths(layers)
    return _write(Path(path), "clip", mmproj_tensors(layers),
                  lambda w: _mmproj_kv(w, n_sam, n_clip), seed)


def write_deepseek_ocr_pair(out_dir, layers: int | None = None, seed: int = 0,
                            name: str = "deepseek-ocr") -> tuple[Path, Path]:
    """Write `{name}-f16.gguf` (text, arch deepseek2-ocr) and `{name}-mmproj-f16.gguf`
    (projector deepseekocr) into out_dir; return both paths.

    `layers` caps the text, SAM and CLIP depths (12 / 12 / 24 in the real model) for quick
    checks; the text model keeps its leading dense layer, so layers >= 2 has a dense and
    a MoE layer; SAM keeps at least 3 layers (llama.cpp needs its global-attention layer 2). Deterministic for a given seed (the projector uses seed + 1). The full
    model is ~5.9 GB + ~0.8 GB; see deepseek_ocr_sizes()."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (write_deepseek_ocr_text(out_dir / f"{name}-f16.gguf", layers, seed),
            write_deepseek_ocr_mmproj(out_dir / f"{name}-mmproj-f16.gguf", layers, seed + 1))


def deepseek_ocr_sizes(layers: int | None = None) -> dict:
    """Parameter counts and exact F16 file sizes in bytes, computed without writing
    tensor data (only the headers, to a temporary directory)."""
    n_layer, n_sam, n_clip = _depths(layers)
    out = {"text": gguf_size(S["arch"], text_tensors(layers), lambda w: _text_kv(w, n_layer)),
           "mmproj": gguf_size("clip", mmproj_tensors(layers),
                               lambda w: _mmproj_kv(w, n_sam, n_clip))}
    out["total"] = {k: out["text"][k] + out["mmproj"][k] for k in ("tensors", "params", "bytes")}
    return out


def active_text_params() -> int:
    """Text-model parameters used per token (6 of 64 experts), output layer included."""
    d, ffe = S["n_embd"], S["n_ff_exp"]
    attn = 4 * d * d
    dense = 3 * d * S["n_ff"]
    moe = S["n_expert"] * d + 3 * d * ffe * (S["n_expert_used"] + S["n_expert_shared"])
    n_moe = S["n_layer"] - S["n_layer_dense_lead"]
    norms = (2 * S["n_layer"] + 1) * d
    return (2 * S["n_vocab"] * d + S["n_layer"] * attn + S["n_layer_dense_lead"] * dense
            + n_moe * moe + norms)
