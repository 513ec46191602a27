"""`foveate bench --encode-profile`: where a page's vision encode spends its time, per op.

The projector is reopened with libfoveate's eval callback (native/lib/foveate.h,
foveate_profile_eval), so ggml computes its graph one node at a time and each node's wall time
is recorded with its op, types and shapes. Nodes are grouped (matmuls by weight type and
shape, attention, norms, RoPE, copies and permutes, the rest) with their FLOPs, so each group's
rate can be set beside the CPU's measured floor for its type. Computing node by node adds a
thread-pool wake-up per node, so the groups' sum is a little above the unprofiled encode,
which is timed first and printed beside it.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

from ..inputs.images import load_page
from ..native import bindings as B

# ops that move or view data without arithmetic (their time is memory traffic)
MOVES = {"CPY", "CONT", "DUP", "PERMUTE", "TRANSPOSE", "RESHAPE", "VIEW", "GET_ROWS", "CONCAT",
         "SET_ROWS", "PAD", "ROLL"}
NORMS = {"NORM", "RMS_NORM", "GROUP_NORM", "L2_NORM"}


@dataclass
class OpGroup:
    key: str          # what the group is (op, weight type, shape)
    nodes: int = 0
    us: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0  # data it moves: a matmul's weights, a copy's output (0: not counted)

    @property
    def gflops(self) -> float:
        return self.flops / (self.us * 1e3) if self.us else 0.0


def _n(ne) -> int:
    out = 1
    for d in ne:
        out *= max(1, int(d))
    return out


TYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_K": 144 / 256,
              "q6_K": 210 / 256, "q5_K": 176 / 256}


def classify(r) -> tuple[str, float, float]:
    """(group key, FLOPs, bytes of the weight or the data moved) of one profiled node."""
    op, t0 = r.op.decode(), r.type0.decode()
    if op == "MUL_MAT":
        k, m, n = r.ne0[0], r.ne0[1], r.ne1[1] * r.ne1[2] * r.ne1[3]
        flops = 2.0 * k * m * n
        if r.src0_leaf:   # a weight matrix times the activations
            return (f"mul_mat weight {t0} [{k} x {m}]", flops, _n(r.ne0) * TYPE_BYTES.get(t0, 4))
        return (f"mul_mat of activations ({t0} x {r.type1.decode()})", flops, 0.0)
    if op == "FLASH_ATTN_EXT":
        dk, nq, h = r.ne0[0], r.ne0[1], r.ne0[2] * r.ne0[3]
        nkv, dv = r.ne1[1], r.ne2[0]
        return (f"flash attention (n_kv {nkv})", 2.0 * nq * nkv * h * (dk + dv), 0.0)
    if op == "SOFT_MAX":
        return (f"soft_max [{r.ne[0]} x {r.ne[1]}]", 5.0 * _n(r.ne), 0.0)
    if op in NORMS:
        return ("norms", 5.0 * _n(r.ne), 0.0)
    if op == "ROPE":
        return ("rope", 6.0 * _n(r.ne), 0.0)
    if op in MOVES:
        nbytes = 0.0 if op in ("RESHAPE", "VIEW", "PERMUTE", "TRANSPOSE") else _n(r.ne) * 4
        return ("copies, permutes, views", 0.0, nbytes)
    if op in ("IM2COL", "CONV_2D", "CONV_3D"):
        return ("patch embedding (im2col / conv)", 0.0, 0.0)
    return (f"elementwise ({op.lower()})" if op in ("ADD", "MUL", "SCALE", "GELU", "SILU",
                                                     "GELU_QUICK", "GLU", "UNARY")
            else f"other ({op.lower()})", float(_n(r.ne)), 0.0)


def encode_profile(eng, image, warmup: bool = True) -> tuple[list[OpGroup], float, float]:
    """Groups of the encode of `image` (largest first), the unprofiled encode's ms and the
    profiled nodes' summed ms."""
    page = load_page(image, eng.image_max_pixels)
    if warmup:
        eng.image_embeddings(page)
    t0 = time.perf_counter()
    eng.image_embeddings(page)   # the encode alone: the language model is not prefilled
    plain_ms = (time.perf_counter() - t0) * 1e3
    prof = B.foveate.foveate_profile_new()
    try:
        eng.profile_projector(prof)
        eng.image_embeddings(page)
        groups: dict[str, OpGroup] = {}
        rec = B.NodeTime()
        total = 0.0
        for i in range(B.foveate.foveate_profile_count(prof)):
            B.foveate.foveate_profile_get(prof, i, ctypes.byref(rec))
            key, flops, nbytes = classify(rec)
            g = groups.setdefault(key, OpGroup(key))
            g.nodes += 1
            g.us += rec.us
            g.flops += flops
            g.bytes += nbytes
            total += rec.us
    finally:
        eng.profile_projector(None)
        B.foveate.foveate_profile_free(prof)
    return sorted(groups.values(), key=lambda g: -g.us), plain_ms, total / 1e3


def peak_gflops(threads: int, k: int = 1280, m: int = 1280, n: int = 1344,
                repetitions: int = 3) -> dict[str, float]:
    """This CPU's matmul rate by type, measured by ggml itself (native/lib/foveate.h
    foveate_mul_mat_gflops: a [k x m] weight in the CPU backend's plain buffer, as clip keeps
    its weights, times n activation rows; the 3B projector's width and a page's patches by
    default), and numpy's F32 BLAS as a reference for what the cores do at F32."""
    import numpy as np

    out = {}
    for t in ("f32", "f16", "bf16", "q8_0"):
        rate = B.foveate.foveate_mul_mat_gflops(B.ggml_type(t), k, m, n, threads, repetitions)
        if rate > 0:
            out[t] = rate
    a = np.random.default_rng(0).standard_normal((n, k), dtype=np.float32)
    w = np.random.default_rng(1).standard_normal((k, m), dtype=np.float32)
    best = min(_timed(lambda: a @ w) for _ in range(repetitions + 1))
    out["numpy f32 (BLAS)"] = 2.0 * k * m * n / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def format_profile(groups: list[OpGroup], plain_ms: float, profiled_ms: float,
                   peaks: dict[str, float] | None = None) -> str:
    lines = [f"encode: {plain_ms:.0f} ms unprofiled; {profiled_ms:.0f} ms summed over the nodes "
             f"(node at a time)", "",
             "| group | nodes | ms | share | GFLOP | GFLOP/s | MB moved |",
             "|---|---|---|---|---|---|---|"]
    for g in groups:
        if g.us < 1e-3 * profiled_ms * 1e3 and g.flops == 0:
            continue
        lines.append(f"| {g.key} | {g.nodes} | {g.us / 1e3:.1f} | {g.us / 1e3 / profiled_ms:.1%} | "
                     f"{g.flops / 1e9:.1f} | {g.gflops:.1f} | {g.bytes / 1e6:.1f} |")
    if peaks:
        lines += ["", "measured matmul rate of this CPU (GFLOP/s): " +
                  ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())]
    return "\n".join(lines)
