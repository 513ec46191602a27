"""Fill a sequence's KV cache with N image cells without prefilling N tokens (benchmarks).

Decode time does not depend on the cached values, only on the cells: how many, their
positions, which are image cells. Prefilling 16k tokens through a full-depth 3B takes most of
an hour on 2 cores, so `fill_image_cells` prefills a small sample image for real, reads its
sequence state back (`llama_state_seq_get_data`), writes a state with N cells laid out exactly
as `prefill_synthetic` would lay out N tokens (same positions, same image flag), whose
K/V rows repeat the sample's, and loads it (`llama_state_seq_set_data`). The decode graph that
runs afterwards is the real one; only the attention values differ.

The state layout parsed here is llama_kv_cache::state_write (src/llama-kv-cache.cpp) with
patches/0005 (every cell carries its ext: x, y, tok).
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

import numpy as np

from ..native.bindings import llama
from ..errors import DecodeError

# one cell of a single-sequence state: pos, n_seq_id (1), ext x, y, tok, seq id
CELL = np.dtype([("pos", "<i4"), ("n_seq", "<u4"), ("x", "<i4"), ("y", "<i4"),
                 ("tok", "<i4"), ("seq", "<i4")])


@dataclass
class SeqState:
    head: bytes                 # magic, seq id, n_stream, streams before the filled one
    cells: np.ndarray           # CELL records
    v_trans: bool
    k: list                     # per layer (type, row bytes, rows [n, row bytes] uint8)
    v: list                     # per layer (type, row bytes or (el, n_embd), rows)
    tail: bytes                 # streams after the filled one

    def to_bytes(self) -> bytes:
        n = len(self.cells)
        out = [self.head, struct.pack("<I", n), self.cells.tobytes(),
               struct.pack("<II", int(self.v_trans), len(self.k))]
        for t, row, rows in self.k:
            out += [struct.pack("<iQ", t, row), rows.tobytes()]
        for t, size, rows in self.v:
            if self.v_trans:   # rows: [n_embd_v, n, el]
                out += [struct.pack("<iII", t, *size), rows.tobytes()]
            else:
                out += [struct.pack("<iQ", t, size), rows.tobytes()]
        out.append(self.tail)
        return b"".join(out)


def parse_seq_state(blob: bytes, n_layer: int) -> SeqState:
    """Split a single-sequence state with one non-empty stream into its parts."""
    mv = memoryview(blob)
    off = 8                                      # magic, seq id
    (n_stream,) = struct.unpack_from("<I", blob, off)
    off += 4
    start = None
    for _ in range(n_stream):
        (n,) = struct.unpack_from("<I", blob, off)
        if n == 0:
            off += 4
            continue
        if start is not None:
            raise ValueError("sequence state spans several streams")
        start = off
        off += 4
        cells = np.frombuffer(mv[off:off + n * CELL.itemsize], CELL).copy()
        if (cells["n_seq"] != 1).any():
            raise ValueError("expected one sequence id per cell")
        off += n * CELL.itemsize
        v_trans, nl = struct.unpack_from("<II", blob, off)
        off += 8
        if nl != n_layer:
            raise ValueError(f"state has {nl} layers, model {n_layer}")
        k, v = [], []
        for _ in range(nl):
            t, row = struct.unpack_from("<iQ", blob, off)
            off += 12
            k.append((t, row, np.frombuffer(mv[off:off + n * row], np.uint8).reshape(n, row)))
            off += n * row
        for _ in range(nl):
            if v_trans:
                t, el, ne = struct.unpack_from("<iII", blob, off)
                off += 12
                rows = np.frombuffer(mv[off:off + ne * n * el], np.uint8).reshape(ne, n, el)
                v.append((t, (el, ne), rows))
                off += ne * n * el
            else:
                t, row = struct.unpack_from("<iQ", blob, off)
                off += 12
                v.append((t, row, np.frombuffer(mv[off:off + n * row], np.uint8).reshape(n, row)))
                off += n * row
        end = off
    if start is None:
        raise ValueError("sequence state has no cells")
    tail = blob[end:]
    if len(tail) % 4 or any(tail):   # only empty streams may follow: anything else is unknown
        raise ValueError("sequence state has data this parser does not know (not a plain KV "
                         "cache with K and V per layer?)")
    return SeqState(bytes(blob[:start]), cells, bool(v_trans), k, v, bytes(blob[end:]))


def get_seq_state(ctx, seq_id: int = 0) -> bytes:
    size = llama.llama_state_seq_get_size(ctx, seq_id)
    buf = (ctypes.c_uint8 * size)()
    got = llama.llama_state_seq_get_data(ctx, buf, size, seq_id)
    if got != size:
        raise DecodeError(f"llama_state_seq_get_data wrote {got} of {size} bytes")
    return bytes(buf)


def uses_mrope(model) -> bool:
    """Whether the model's image tokens take (t, y, x) positions (4 per embedding)."""
    return llama.llama_model_rope_type(model) in (llama.LLAMA_ROPE_TYPE_MROPE,
                                                  llama.LLAMA_ROPE_TYPE_IMROPE)


def grid_side(n_tokens: int) -> int:
    """Side of the square grid a synthetic image of n tokens is laid out on."""
    return max(1, int(np.ceil(np.sqrt(n_tokens))))


def image_cell_layout(n_tokens: int, mrope: bool) -> np.ndarray:
    """CELL records of n image tokens decoded as prefill_synthetic decodes them: M-RoPE
    at (t 0, grid y, grid x) on a square grid, 1-D at positions 0..n-1."""
    cells = np.zeros(n_tokens, CELL)
    j = np.arange(n_tokens)
    cells["n_seq"], cells["tok"], cells["seq"] = 1, -1, 0   # tok -1: LLAMA_TOKEN_NULL (embedding)
    if mrope:
        side = grid_side(n_tokens)
        cells["y"], cells["x"] = j // side, j % side
    else:
        cells["pos"] = j
    return cells


def fill_image_cells(eng, n_tokens: int, sample: int = 256) -> int:
    """Clear the cache and give sequence 0 n_tokens image cells (see the module docstring).
    Returns n_past, the position the next token takes."""
    if getattr(eng, "recurrent", False):
        raise ValueError("--fill state writes a state of KV cells only; this model has "
                         "recurrent layers (a hybrid): use --fill prefill")
    mrope = uses_mrope(eng._model)
    mem = llama.llama_get_memory(eng._ctx)
    llama.llama_memory_clear(mem, True)
    m = min(sample, n_tokens)
    prefill_synthetic(eng, m)
    st = parse_seq_state(get_seq_state(eng._ctx), llama.llama_model_n_layer(eng._model))
    if not np.array_equal(st.cells, image_cell_layout(m, mrope)):   # the parse is right
        raise DecodeError("the sampled KV cells are not laid out as expected")
    src = np.arange(n_tokens) % m
    st.cells = image_cell_layout(n_tokens, mrope)
    st.k = [(t, row, rows[src]) for t, row, rows in st.k]
    st.v = [(t, size, rows[:, src] if st.v_trans else rows[src]) for t, size, rows in st.v]
    blob = st.to_bytes()
    llama.llama_memory_clear(mem, True)
    buf = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
    if llama.llama_state_seq_set_data(eng._ctx, buf, len(blob), 0) != len(blob):
        raise DecodeError(f"could not load a state of {n_tokens} image cells "
                          f"(n_ctx={eng.n_ctx})")
    return grid_side(n_tokens) if mrope else n_tokens   # as prefill_synthetic returns


def prefill_synthetic(eng, n_tokens: int, seed: int = 0, image=None) -> int:
    """Decode n_tokens random embeddings (or `image` = (rows, kept ids), e.g. merged by
    bench._synthetic_image) as one image laid out on a square grid; merged rows keep their grid positions (M-RoPE), or
    take consecutive ones (1-D models: decode timing is the same as at gapped positions)."""
    # the input width: n_embd, or wider for models that take extra features per image row
    # (Qwen3-VL: deepstack, 4 x n_embd)
    n_embd = llama.llama_model_n_embd_inp(eng._model)
    n_pos = 4 if uses_mrope(eng._model) else 1
    if image is None:   # the same random rows as bench._synthetic_image without merging
        embd = np.random.default_rng(seed).standard_normal((n_tokens, n_embd)).astype(np.float32)
        image = (embd, np.arange(n_tokens))
    embd, grid_ids = image
    side = grid_side(n_tokens)
    n_tokens = len(embd)
    idx = np.asarray(grid_ids) if n_pos == 4 else np.arange(n_tokens)
    n_b = eng.n_batch
    batch = llama.llama_batch_init(n_b, n_embd, 1)
    # llama_batch_free frees batch.pos: keep its address (a field access would alias the
    # struct's memory) and put it back before freeing
    own_pos = ctypes.cast(batch.pos, ctypes.c_void_p).value
    try:
        for start in range(0, n_tokens, n_b):
            m = min(n_b, n_tokens - start)
            sl = slice(start, start + m)
            ctypes.memmove(batch.embd, embd[sl].ctypes.data, embd[sl].nbytes)
            if n_pos == 4:  # M-RoPE: (t, y, x, 0) sections, section-major
                pos = np.concatenate([np.zeros(m), idx[sl] // side, idx[sl] % side,
                                      np.zeros(m)]).astype(np.int32)
            else:
                pos = idx[sl].astype(np.int32)
            pos_buf = (llama.llama_pos * len(pos))(*pos.tolist())
            batch.pos = ctypes.cast(pos_buf, ctypes.POINTER(llama.llama_pos))
            batch.n_tokens = m
            for i in range(m):
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = start + i == n_tokens - 1
            if llama.llama_decode(eng._ctx, batch) != 0:
                raise DecodeError(f"synthetic prefill of {n_tokens} embeddings failed")
    finally:
        batch.pos = ctypes.cast(own_pos, ctypes.POINTER(llama.llama_pos))
        llama.llama_batch_free(batch)
    # M-RoPE: the next text position follows the image grid (as mtmd does); else the count
    return side if n_pos == 4 else n_tokens
