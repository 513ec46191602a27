"""Write random-weight GGUFs from tensor specs, streamed one tensor at a time, so a
real-size model (gigabytes) never sits in memory. Every family's shape module
(instruments/shapes/*.py) lists its tensors as specs and its metadata as a function of a
GGUFWriter; this module writes them, sizes them, and builds the character vocabularies.

A spec is (name, numpy shape, dtype, init): numpy shapes are ggml's ne reversed; init is
"w" (normal, std 0.02), "ones" or "zeros". Deterministic for a given seed.
"""
from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

F16, F32 = np.float16, np.float32
Spec = tuple[str, tuple, type, str]

# token types (llama.cpp LLAMA_TOKEN_TYPE_*)
NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_CHUNK = 1 << 22  # random draws per step: bounds the float32 scratch for big tensors


def char_vocab(special: Iterable[tuple[str, int]], n_vocab: int = 0,
               at: dict[str, int] | None = None) -> tuple[list[str], list[int]]:
    """A character-level SentencePiece-type vocab: `special` (token, type) first, single
    printable characters, byte fallback, then unused tokens up to n_vocab (the real model's
    size, so embedding and output layers cost what they do there). `at` pins special tokens
    to their real ids (filled with unused tokens below them)."""
    tokens: list[str] = []
    types: list[int] = []
    pinned = dict(at or {})
    rest = [(t, k) for t, k in special if t not in pinned]
    kinds = dict(special)
    for ch in ["\u2581", "\n"] + [c for c in string.printable
                                  if c.strip() and c not in "\t\n\r\x0b\x0c"]:
        rest.append((ch, NORMAL))
    rest += [(f"<0x{b:02X}>", BYTE) for b in range(256)]
    if pinned and max(pinned.values()) >= max(n_vocab, len(rest) + len(pinned)):
        raise ValueError("a pinned token id lies past the vocab")
    by_id = {i: t for t, i in pinned.items()}
    it = iter(rest)
    total = max(n_vocab, len(rest) + len(pinned))
    for i in range(total):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(kinds.get(by_id[i], CONTROL))
            continue
        nxt = next(it, None)
        if nxt is None:
            tokens.append(f"<unused_{i}>")
            types.append(UNUSED)
        else:
            tokens.append(nxt[0])
            types.append(nxt[1])
    return tokens, types


def add_char_tokenizer(w, tokens: list[str], types: list[int], *, bos: str | None,
                       eos: str, unk: str = "<unk>", pad: str | None = None,
                       add_bos: bool = False) -> None:
    """The tokenizer keys of a char vocab (SentencePiece type, llama.cpp model "llama")."""
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    if bos is not None:
        w.add_bos_token_id(tokens.index(bos))
    w.add_eos_token_id(tokens.index(eos))
    if unk in tokens:
        w.add_unk_token_id(tokens.index(unk))
    if pad is not None:
        w.add_pad_token_id(tokens.index(pad))
    w.add_add_bos_token(add_bos)
    w.add_add_space_prefix(False)


def make_array(rng, shape, dtype, init) -> np.ndarray:
    if init == "ones":
        return np.ones(shape, dtype=dtype)
    if init == "zeros":
        return np.zeros(shape, dtype=dtype)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        n = min(_CHUNK, flat.size - i)
        flat[i:i + n] = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
    return out


def _open(path: Path, arch: str, specs: list[Spec], kv: Callable) -> "object":
    """A GGUFWriter with metadata and tensor infos written; tensor data follows in order."""
    import gguf

    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path.name}: a tensor name is listed twice")
    w = gguf.GGUFWriter(str(path), arch)
    kv(w)
    for name, shape, dtype, _ in specs:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        w.add_tensor_info(name, shape, np.dtype(dtype), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    return w


def write_gguf(path, arch: str, specs: list[Spec], kv: Callable, seed: int) -> Path:
    """Write a GGUF of `specs` with random weights; `kv(writer)` adds the metadata."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    w = _open(path, arch, specs, kv)
    try:
        for _, shape, dtype, init in specs:  # streamed: one tensor in memory at a time
            w.write_tensor_data(make_array(rng, shape, dtype, init))
    finally:
        w.close()
    return path


def gguf_size(arch: str, specs: list[Spec], kv: Callable) -> dict:
    """Tensor count, parameters and the exact file size in bytes, without writing tensor
    data (only the header, to a temporary file)."""
    import gguf

    align = gguf.GGUF_DEFAULT_ALIGNMENT
    pad = lambda n: (n + align - 1) // align * align
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "header.gguf"
        _open(path, arch, specs, kv).close()
        header = os.path.getsize(path)
    params = sum(int(np.prod(s)) for _, s, _, _ in specs)
    data = sum(pad(int(np.prod(s)) * np.dtype(d).itemsize) for _, s, d, _ in specs)
    return {"tensors": len(specs), "params": params, "bytes": pad(header) + data}


# --- what every family module's write_pair / sizes share ----------------------------------------
# A file's parts: (arch, specs, kv), as write_gguf and gguf_size take them.

def pick_shape(shapes: dict, shape: str) -> dict:
    if shape not in shapes:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(shapes)}")
    return shapes[shape]


def cut_depths(layers: int | None, *full: int) -> tuple[int, ...]:
    """Each stack's depth: the full one, or at most `layers` (>= 1)."""
    if layers is None:
        return full
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return tuple(min(layers, n) for n in full)


def write_pair_files(out_dir, shape: str, text: tuple, mmproj: tuple,
                     seed: int) -> tuple[Path, Path]:
    """`{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1) in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (write_gguf(out_dir / f"{shape}-f16.gguf", *text, seed),
            write_gguf(out_dir / f"{shape}-mmproj-f16.gguf", *mmproj, seed + 1))


def pair_sizes(text: tuple, mmproj: tuple) -> dict:
    return {"text": gguf_size(*text), "mmproj": gguf_size(*mmproj)}


def add_llm_head(w, name: str, n_layer: int, s: dict, head_count_kv=None) -> None:
    """The keys every family's text model opens with, in the converters' order: type, name,
    depth, trained context, widths and heads (`head_count_kv`: a per-layer list for hybrid
    models; default s["n_head_kv"])."""
    w.add_type("model")
    w.add_name(name)
    w.add_block_count(n_layer)
    w.add_context_length(s["n_ctx_train"])
    w.add_embedding_length(s["n_embd"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"] if head_count_kv is None else head_count_kv)


# --- what several families' tensor lists and vocabularies share -------------------------------

def layer_norm(name: str, n: int) -> list[Spec]:
    """A LayerNorm's weight (ones) and bias (zeros), `name` without the suffix."""
    return [(name + ".weight", (n,), F32, "ones"), (name + ".bias", (n,), F32, "zeros")]


def linears(prefix: str, names: Iterable[str], n_out: int, n_in: int) -> list[Spec]:
    """Linear layers with biases, `prefix + name` each: n_out x n_in weight, n_out bias."""
    return [s for n in names for s in ((prefix + n + ".weight", (n_out, n_in), F16, "w"),
                                       (prefix + n + ".bias", (n_out,), F32, "zeros"))]


def vit_block(b: str, vd: int, vff: int, fused_qkv: bool = False) -> list[Spec]:
    """One ViT / SigLIP encoder layer as llama.cpp's clip converters write it (prefix `b`, as
    "v.blk.3."): attention q, k, v (or one fused attn_qkv, 3 vd wide) and out, LayerNorms ln1 /
    ln2, the MLP ffn_up (vd -> vff) / ffn_down; every matrix with its bias."""
    qkv = (linears(b, ["attn_qkv"], 3 * vd, vd) if fused_qkv
           else linears(b, ["attn_q", "attn_k", "attn_v"], vd, vd))
    return (qkv + linears(b, ["attn_out"], vd, vd) + layer_norm(b + "ln1", vd)
            + layer_norm(b + "ln2", vd) + linears(b, ["ffn_up"], vff, vd)
            + linears(b, ["ffn_down"], vd, vff))


def vit_blocks(n: int, vd: int, vff: int, fused_qkv: bool = False) -> list[Spec]:
    """`n` vit_block layers, v.blk.0. .. v.blk.{n-1}."""
    return [s for i in range(n) for s in vit_block(f"v.blk.{i}.", vd, vff, fused_qkv)]


def dense_decoder(n_layer: int, n_vocab: int, d: int, ff: int, q: int, kv: int, tied: bool, *,
                  qkv_bias: bool = False, qk_norm: tuple[str, ...] = (),
                  head_dim: int = 0) -> list[Spec]:
    """A llama-style text model as llama.cpp's converters name it: token_embd; per layer
    attn_norm, attn_q (q wide) / attn_k / attn_v (kv wide; with biases where `qkv_bias`, as
    Qwen2's), attn_output, per-head RMSNorms attn_{x}_norm for x in `qk_norm` (in that order,
    head_dim wide), ffn_norm and a SwiGLU FFN; output_norm, and output unless `tied`."""
    t: list[Spec] = [("token_embd.weight", (n_vocab, d), F16, "w")]
    for i in range(n_layer):
        p = f"blk.{i}."
        t.append((p + "attn_norm.weight", (d,), F32, "ones"))
        for name, n in (("attn_q", q), ("attn_k", kv), ("attn_v", kv)):
            t.append((p + name + ".weight", (n, d), F16, "w"))
            if qkv_bias:
                t.append((p + name + ".bias", (n,), F32, "zeros"))
        t.append((p + "attn_output.weight", (d, q), F16, "w"))
        t += [(p + f"attn_{x}_norm.weight", (head_dim,), F32, "ones") for x in qk_norm]
        t += [(p + "ffn_norm.weight", (d,), F32, "ones"),
              (p + "ffn_gate.weight", (ff, d), F16, "w"),
              (p + "ffn_up.weight", (ff, d), F16, "w"),
              (p + "ffn_down.weight", (d, ff), F16, "w")]
    t.append(("output_norm.weight", (d,), F32, "ones"))
    if not tied:
        t.append(("output.weight", (n_vocab, d), F16, "w"))
    return t


# Qwen's added tokens in its tokenizers' order, from <|endoftext|> (id 151643 in Qwen2, Qwen2.5
# and Qwen3, 248044 in Qwen3.5): Qwen2 has the first 14, Qwen2.5 the first 22, Qwen3 all 26.
QWEN_ADDED = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>",
    "</think>")
# the ones past <|video_pad|>, which added_tokens_decoder marks "special": false (some families
# here class Qwen's tokens by their "<|" instead)
QWEN_NOT_SPECIAL = frozenset(QWEN_ADDED[14:])


def qwen_added(count: int = len(QWEN_ADDED), first: int = 151643) -> dict[str, int]:
    """The first `count` of Qwen's added tokens at their ids, <|endoftext|> at `first`."""
    return {t: first + i for i, t in enumerate(QWEN_ADDED[:count])}


def qwen_vl_merger(vd: int, merge: int, out: int) -> list[Spec]:
    """Qwen2-VL's patch merger as converted (Qwen2-VL, Qwen3-VL, Qwen3.5): the tower's last
    LayerNorm v.post_ln, then merge x merge patches concatenated -> mm.0 (square) -> GELU ->
    mm.2 (to the text model's width `out`)."""
    merged = vd * merge ** 2
    return (layer_norm("v.post_ln", vd) + linears("mm.", ["0"], merged, merged)
            + linears("mm.", ["2"], out, merged))
