"""Float64 numpy port of RTPrune's merge as the authors' code does it (shared/design/rtprune.md):
L2-norm top-k of the content rows, dustbin Sinkhorn (z 0.2, 100 iterations, u then v),
kept += 0.1 * T x_dropped, dynamic ratio r = 1 - (1 - r_sim)(1 - r_info), newline collapse.
Written from the specification, independently of native/mtmd/mtmd-merge.cpp. score="duplicates"
ranks by foveate's alternative (fewest near-duplicates first) instead of the L2 norm."""
from __future__ import annotations

import numpy as np

CONTENT, NEWLINE, MARKER = 0, 1, 2


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def sinkhorn_plan(scores: np.ndarray, z: float = 0.2, iters: int = 100) -> np.ndarray:
    """scores: K x P (kept x dropped). Returns the K x P real block of the plan."""
    K, P = scores.shape
    Z = np.full((K + 1, P + 1), z)
    Z[:K, :P] = scores
    norm = -np.log(K + P)
    log_mu = np.append(np.full(K, norm), np.log(P) + norm)
    log_nu = np.append(np.full(P, norm), np.log(K) + norm)
    u, v = np.zeros(K + 1), np.zeros(P + 1)
    for _ in range(iters):
        u = log_mu - _lse(Z + v[None, :], 1)
        v = log_nu - _lse(Z + u[:, None], 0)
    return np.exp(Z + u[:, None] + v[None, :] - norm)[:K, :P]


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def row_overlap(x: np.ndarray) -> np.ndarray:
    """Per row, the mean cos^2 with the other rows (r_sim's terms)."""
    g = (unit(x) @ unit(x).T) ** 2
    return (g.sum(1) - np.diag(g)) / (len(x) - 1)


def r_sim(x: np.ndarray) -> float:
    return float(1.0 - np.mean(row_overlap(x)))


def r_info(pixels: np.ndarray, patch: int, threshold: float = 0.2) -> float:
    """pixels: H x W x 3 in [-1, 1]; Sobel magnitude > threshold, zero padding per patch."""
    gray = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    gh, gw = gray.shape[0] // patch, gray.shape[1] // patch
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    ky = kx.T
    fr = []
    for py in range(gh):
        for px in range(gw):
            p = np.pad(gray[py * patch:(py + 1) * patch, px * patch:(px + 1) * patch], 1)
            gx = np.zeros((patch, patch))
            gy = np.zeros((patch, patch))
            for dy in range(3):
                for dx in range(3):
                    win = p[dy:dy + patch, dx:dx + patch]
                    gx += kx[dy, dx] * win
                    gy += ky[dy, dx] * win
            fr.append(np.mean(np.sqrt(gx ** 2 + gy ** 2) > threshold))
    return float(np.mean(fr)) if fr else 0.0


def near_duplicates(x: np.ndarray, t: float = 0.05) -> np.ndarray:
    """Per row, the soft count of the other rows pointing the same way: sum_j!=i exp((cos_ij - 1) / t)."""
    c = np.exp((unit(x) @ unit(x).T - 1.0) / t)
    return c.sum(1) - np.diag(c)


def merge(embd: np.ndarray, kind=None, ratio=None, pixels=None, patch=0,
          alpha: float = 0.1, z: float = 0.2, iters: int = 100, score: str = "norm"):
    """ratio None = dynamic; score: "norm", "duplicates", or one key per content row (higher
    kept; for experiments, models/reader/merge_sim.py). Returns (rows, kept_ids, (ratio, r_sim,
    r_info))."""
    x = np.asarray(embd, np.float64)
    n = len(x)
    kind = np.zeros(n, int) if kind is None else np.asarray(kind)
    content = np.flatnonzero(kind == CONTENT)
    rs = ri = 0.0
    if ratio is None:
        rs = r_sim(x[content]) if len(content) > 1 else 0.0
        ri = r_info(np.asarray(pixels, np.float64), patch) if pixels is not None else 0.0
        ratio = rs + ri - rs * ri if len(content) > 1 else 1.0
    k = max(min(int(np.floor(len(content) * ratio)), len(content)), min(len(content), 1))
    if isinstance(score, str):
        key = np.linalg.norm(x[content], axis=1) if score == "norm" else -near_duplicates(x[content])
    else:
        key = np.asarray(score, np.float64)
    order = np.argsort(-key, kind="stable")
    kept = np.sort(content[order[:k]])
    dropped = np.setdiff1d(content, kept)
    out = x.copy()
    if len(dropped):
        T = sinkhorn_plan(unit(x[kept]) @ unit(x[dropped]).T, z, iters)
        out[kept] = x[kept] + alpha * (T @ x[dropped])
    keep_mask = kind != CONTENT
    keep_mask[kept] = True
    ids, prev_nl = [], False
    for i in range(n):
        if not keep_mask[i]:
            continue
        if kind[i] == NEWLINE and prev_nl:
            continue
        prev_nl = kind[i] == NEWLINE
        ids.append(i)
    ids = np.array(ids, int)
    return out[ids], ids, (ratio, rs, ri)
