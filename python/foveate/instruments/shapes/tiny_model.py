"""Write random-weight Qwen2.5-VL GGUFs (text model + projector): tiny ones for tests,
and ones with real models' shapes (Qwen2.5-VL-3B / -7B) for timing.

They use the real architectures (LLM arch `qwen2vl` with M-RoPE, projector
`qwen2.5vl_merger`), so they exercise exactly the llama.cpp and mtmd code paths
real Qwen2.5-VL GGUFs take; only the sizes are small. Output is noise: these are
for plumbing tests and as a stand-in until a trained reading model exists.

The tokenizer is character level (SentencePiece-type vocab of single characters
plus byte fallback), with ChatML control tokens and Qwen's vision markers.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ChatML. Content is a string (llama.cpp's own prompt, foveate.Reader) or, as chat handlers
# pass it (llama-cpp-python's MTMDChatHandler, llama-server), a list of parts whose texts
# (the image part carries the media marker) are joined by newlines: the prompt Reader builds.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    # the separator between parts as an expression: a literal newline right after a block tag
    # is deleted by trim_blocks (llama-cpp-python's MTMDChatHandler renders with it)
    "{% for part in message['content'] %}{{ part['text'] }}{% if not loop.last %}{{ '\\n' }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>",
           "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
# token types (llama.cpp LLAMA_TOKEN_TYPE_*): 1 normal, 2 unknown, 3 control, 6 byte
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def char_vocab() -> tuple[list[str], list[int]]:
    tokens, types = [], []
    for t in SPECIAL:
        tokens.append(t)
        types.append(_UNKNOWN if t == "<unk>" else _CONTROL)
    for ch in ["\u2581", "\n"] + [c for c in string.printable if c.strip() and c not in "\t\n\r\x0b\x0c"]:
        tokens.append(ch)
        types.append(_NORMAL)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(_BYTE)
    return tokens, types


@dataclass
class TinyShape:
    n_embd: int = 256          # multiple of 256 so K-quants apply to the text model
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 512
    n_layer: int = 2
    n_ctx_train: int = 4096
    v_embd: int = 64
    v_head: int = 2
    v_ff: int = 128
    v_layer: int = 2
    v_wa_pattern: int = 2      # every 2nd vision block uses full attention
    patch: int = 14
    image_size: int = 560
    proj_dim: int | None = None  # projector output; != n_embd makes a mismatched pair
    n_vocab: int = 0           # pad the char vocab with unused tokens up to this size
    rope_base: float = 1e6
    image_mean: tuple = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple = (0.26862954, 0.26130258, 0.27577711)
    name: str = "foveate-tiny-qwen2.5vl (random weights)"
    rope_1d: bool = False      # text arch qwen2 (1-D RoPE) instead of qwen2vl (M-RoPE)


# Real shapes, from the models' config.json (text) and vision_config (projector).
SHAPES = {
    "tiny": TinyShape(),
    "qwen2.5-vl-3b": TinyShape(n_embd=2048, n_head=16, n_head_kv=2, n_ff=11008, n_layer=36,
                               n_ctx_train=128000, v_embd=1280, v_head=16, v_ff=3420,
                               v_layer=32, v_wa_pattern=8, n_vocab=151936),
    "qwen2.5-vl-7b": TinyShape(n_embd=3584, n_head=28, n_head_kv=4, n_ff=18944, n_layer=28,
                               n_ctx_train=128000, v_embd=1280, v_head=16, v_ff=3420,
                               v_layer=32, v_wa_pattern=8, n_vocab=152064),
}


def _w(rng, *shape, std=0.02):
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float16)


def _ones(n):
    return np.ones(n, dtype=np.float32)


def _zeros(n):
    return np.zeros(n, dtype=np.float32)


class _Overlay:
    """GGUFWriter wrapper: tensors found in `weights` replace the random ones (same shape)."""

    def __init__(self, writer, weights):
        self._w, self._weights = writer, weights or {}

    def add_tensor(self, name, arr):
        if name in self._weights:
            new = np.asarray(self._weights[name])
            if new.shape != arr.shape:
                raise ValueError(f"{name}: trained shape {new.shape} != expected {arr.shape}")
            arr = new.astype(arr.dtype)
        self._w.add_tensor(name, arr)

    def __getattr__(self, k):
        return getattr(self._w, k)


def write_text_model(path: Path, shape: TinyShape, seed: int = 0, weights=None) -> Path:
    """Random weights, or trained ones from `weights` (GGUF tensor name -> array)."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, types = char_vocab()
    for i in range(len(tokens), shape.n_vocab):  # real vocab size: same output-layer cost
        tokens.append(f"<unused_{i}>")
        types.append(5)  # unused
    head_dim = shape.n_embd // shape.n_head
    n_kv = head_dim * shape.n_head_kv
    q = head_dim // 2  # M-RoPE sections (t, h, w, extra) must sum to head_dim / 2
    sections = [q // 4, (q - q // 4) // 2, q - q // 4 - (q - q // 4) // 2, 0]

    w = _Overlay(gguf.GGUFWriter(str(path), "qwen2" if shape.rope_1d else "qwen2vl"), weights)
    w.add_name(shape.name)
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(shape.rope_base)
    if not shape.rope_1d:
        w.add_rope_dimension_sections(sections)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML_TEMPLATE)

    n_vocab = len(tokens)
    w.add_tensor("token_embd.weight", _w(rng, n_vocab, shape.n_embd))
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", _ones(shape.n_embd))
        w.add_tensor(p + "attn_q.weight", _w(rng, shape.n_embd, shape.n_embd))
        w.add_tensor(p + "attn_q.bias", _zeros(shape.n_embd))
        w.add_tensor(p + "attn_k.weight", _w(rng, n_kv, shape.n_embd))
        w.add_tensor(p + "attn_k.bias", _zeros(n_kv))
        w.add_tensor(p + "attn_v.weight", _w(rng, n_kv, shape.n_embd))
        w.add_tensor(p + "attn_v.bias", _zeros(n_kv))
        w.add_tensor(p + "attn_output.weight", _w(rng, shape.n_embd, shape.n_embd))
        w.add_tensor(p + "ffn_norm.weight", _ones(shape.n_embd))
        w.add_tensor(p + "ffn_gate.weight", _w(rng, shape.n_ff, shape.n_embd))
        w.add_tensor(p + "ffn_up.weight", _w(rng, shape.n_ff, shape.n_embd))
        w.add_tensor(p + "ffn_down.weight", _w(rng, shape.n_embd, shape.n_ff))
    w.add_tensor("output_norm.weight", _ones(shape.n_embd))
    w.add_tensor("output.weight", _w(rng, n_vocab, shape.n_embd))
    _finish(w)
    return path


def write_projector(path: Path, shape: TinyShape, seed: int = 1, weights=None) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    d, ff = shape.v_embd, shape.v_ff
    out = shape.proj_dim or shape.n_embd
    w = _Overlay(gguf.GGUFWriter(str(path), "clip"), weights)
    w.add_name(shape.name + " mmproj")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "qwen2.5vl_merger")
    w.add_bool("clip.use_silu", True)
    w.add_uint32("clip.vision.projection_dim", out)
    w.add_uint32("clip.vision.image_size", shape.image_size)
    w.add_uint32("clip.vision.patch_size", shape.patch)
    w.add_uint32("clip.vision.embedding_length", d)
    w.add_uint32("clip.vision.feed_forward_length", ff)
    w.add_uint32("clip.vision.block_count", shape.v_layer)
    w.add_uint32("clip.vision.attention.head_count", shape.v_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.n_wa_pattern", shape.v_wa_pattern)
    w.add_array("clip.vision.image_mean", list(shape.image_mean))
    w.add_array("clip.vision.image_std", list(shape.image_std))

    w.add_tensor("v.patch_embd.weight", _w(rng, d, 3, shape.patch, shape.patch))
    w.add_tensor("v.patch_embd.weight.1", _w(rng, d, 3, shape.patch, shape.patch))
    for i in range(shape.v_layer):
        p = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + t + ".weight", _w(rng, d, d))
            w.add_tensor(p + t + ".bias", _zeros(d))
        w.add_tensor(p + "ln1.weight", _ones(d))
        w.add_tensor(p + "ln2.weight", _ones(d))
        w.add_tensor(p + "ffn_gate.weight", _w(rng, ff, d))
        w.add_tensor(p + "ffn_gate.bias", _zeros(ff))
        w.add_tensor(p + "ffn_up.weight", _w(rng, ff, d))
        w.add_tensor(p + "ffn_up.bias", _zeros(ff))
        w.add_tensor(p + "ffn_down.weight", _w(rng, d, ff))
        w.add_tensor(p + "ffn_down.bias", _zeros(d))
    w.add_tensor("v.post_ln.weight", _ones(d))
    w.add_tensor("mm.0.weight", _w(rng, 4 * d, 4 * d))
    w.add_tensor("mm.0.bias", _zeros(4 * d))
    w.add_tensor("mm.2.weight", _w(rng, out, 4 * d))
    w.add_tensor("mm.2.bias", _zeros(out))
    _finish(w)
    return path


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_pair(out_dir: Path, shape: TinyShape | None = None, seed: int = 0,
                    name: str = "tiny") -> tuple[Path, Path]:
    """Write `{name}-f16.gguf` and `{name}-mmproj-f16.gguf` into out_dir; return both paths.
    Deterministic for a given seed."""
    shape = shape or TinyShape()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (write_text_model(out_dir / f"{name}-f16.gguf", shape, seed),
            write_projector(out_dir / f"{name}-mmproj-f16.gguf", shape, seed + 1))


def make_shape(name: str, layers: int | None = None) -> TinyShape:
    """A preset from SHAPES; `layers` cuts text and vision depth (for quick checks)."""
    from dataclasses import replace

    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    s = SHAPES[name]
    if layers:
        s = replace(s, n_layer=min(layers, s.n_layer), v_layer=min(layers, s.v_layer))
    return s


def quantize(src: Path, dst: Path, ftype: str, threads: int = 0) -> Path:
    """Quantize a GGUF with the built llama.cpp (llama_model_quantize), e.g. 'Q4_K_M'."""
    from ...native import bindings as B
    from ...errors import ModelError

    llama = B.llama
    code = getattr(llama, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}", None)
    if code is None:
        raise ValueError(f"unknown quantization type {ftype}")
    params = llama.llama_model_quantize_default_params()
    params.ftype = code
    params.nthread = threads
    mark = B.log.mark()
    rc = llama.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ModelError(f"quantizing {src} to {ftype} failed: {B.log.cause_since(mark)}")
    return dst
