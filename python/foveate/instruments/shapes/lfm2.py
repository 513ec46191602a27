"""LFM2 text models (`lfm2`, LiquidAI): a hybrid of short-convolution layers and attention
layers, the language model of LFM2-VL. Text GGUF only for now (random weights): the hybrid
memory path (recurrent + KV cells) is what fixation must handle; LFM2-VL's projector
(`clip.projector_type` "lfm2") is not written yet.

Sources: the vendored converter `conversion/lfm2.py` (LFM2Model: `head_count_kv` per layer,
0 on conv layers; `shortconv.l_cache`; the feed-forward length after block_auto_adjust_ff_dim)
and the loader `src/models/lfm2.cpp` (tensor names and shapes; `token_embd_norm` is the
output norm; the output is tied to the embeddings when `output.weight` is absent).
LFM2-350M's numbers (hidden 1024, 16 layers, attention at layers 2 5 8 10 12 14, 16 heads on
8 KV heads, L_cache 3, ff 4608 after adjustment, vocab 65536, rope theta 1e6, eps 1e-5) are
from its published config.json as recalled, not read here: named a guess.
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, write_gguf)

ARCH = "lfm2"
SHAPES = {
    # a guess from LFM2-350M's config.json (see the docstring)
    "lfm2-350m": dict(n_embd=1024, n_ff=4608, n_layer=16, attn_layers=(2, 5, 8, 10, 12, 14),
                      n_head=16, n_head_kv=8, l_cache=3, n_vocab=65536, rope_theta=1e6,
                      rms_eps=1e-5, n_ctx_train=128000),
    # tests: the same structure, small (conv, conv, attention, conv, attention, conv)
    "lfm2-tiny": dict(n_embd=256, n_ff=512, n_layer=6, attn_layers=(2, 4), n_head=4,
                      n_head_kv=2, l_cache=3, n_vocab=0, rope_theta=1e6, rms_eps=1e-5,
                      n_ctx_train=8192),
}
BOS, EOS, PAD = "<|startoftext|>", "<|im_end|>", "<|pad|>"
NAME = "foveate-{shape}-shape (random weights)"


def text_tensors(S: dict) -> list[Spec]:
    d, ff, hd = S["n_embd"], S["n_ff"], S["n_embd"] // S["n_head"]
    n_vocab = len(vocab_tokens(S)[0])
    t: list[Spec] = [("token_embd.weight", (n_vocab, d), F16, "w"),
                     ("token_embd_norm.weight", (d,), F32, "ones")]   # the output norm
    for i in range(S["n_layer"]):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32, "ones"),            # operator_norm
              (p + "ffn_norm.weight", (d,), F32, "ones"),
              (p + "ffn_gate.weight", (ff, d), F16, "w"),
              (p + "ffn_down.weight", (d, ff), F16, "w"),
              (p + "ffn_up.weight", (ff, d), F16, "w")]
        if i in S["attn_layers"]:
            kv = S["n_head_kv"] * hd
            t += [(p + "attn_q_norm.weight", (hd,), F32, "ones"),
                  (p + "attn_k_norm.weight", (hd,), F32, "ones"),
                  (p + "attn_q.weight", (d, d), F16, "w"),
                  (p + "attn_k.weight", (kv, d), F16, "w"),
                  (p + "attn_v.weight", (kv, d), F16, "w"),
                  (p + "attn_output.weight", (d, d), F16, "w")]
        else:   # the conv weight is 2-D (the converter squeezes it): ne {L_cache, n_embd}
            t += [(p + "shortconv.conv.weight", (d, S["l_cache"]), F32, "w"),
                  (p + "shortconv.in_proj.weight", (3 * d, d), F16, "w"),
                  (p + "shortconv.out_proj.weight", (d, d), F16, "w")]
    return t


def vocab_tokens(S: dict) -> tuple[list[str], list[int]]:
    return char_vocab([(PAD, CONTROL), (BOS, CONTROL), (EOS, CONTROL), ("<unk>", UNKNOWN)],
                      S["n_vocab"])


def _text_kv(shape: str, S: dict):
    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(S)
        add_llm_head(w, NAME.format(shape=shape), S["n_layer"], S,
                     head_count_kv=[S["n_head_kv"] if i in S["attn_layers"] else 0
                                    for i in range(S["n_layer"])])
        w.add_rope_freq_base(S["rope_theta"])
        w.add_vocab_size(len(tokens))
        w.add_shortconv_l_cache(S["l_cache"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, pad=PAD, add_bos=False)
    return kv


def write_text(path, shape: str = "lfm2-tiny", seed: int = 0) -> Path:
    """The text GGUF of `shape` (no projector: images are synthetic embeddings)."""
    S = SHAPES[shape]
    return write_gguf(Path(path), ARCH, text_tensors(S), _text_kv(shape, S), seed)
