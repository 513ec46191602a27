"""Token merging (RTPrune) from Python: parse the user's setting, and merge rows of
embeddings you hold (`merge_rows`, the same C code mtmd runs after the projector)."""
from __future__ import annotations

import ctypes

from ..native import bindings as B


def parse_merge(value) -> tuple[int, float]:
    """`None`/"off"/0 -> off, "auto" -> dynamic ratio, a number in (0, 1] -> fixed keep ratio."""
    if value is None or value is False:
        return B.MERGE_OFF, 1.0
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("off", "none", "0", ""):
            return B.MERGE_OFF, 1.0
        if v in ("auto", "dynamic"):
            return B.MERGE_DYNAMIC, 1.0
        try:
            value = float(v)
        except ValueError:
            raise ValueError(f"merge must be 'auto', 'off' or a keep ratio in (0, 1], "
                             f"got {value!r}") from None
    ratio = float(value)
    if ratio == 0:
        return B.MERGE_OFF, 1.0
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"merge keep ratio must be in (0, 1], got {ratio}")
    return B.MERGE_FIXED, ratio


MERGE_POSITIONS = ("original", "consecutive")


def check_merge_positions(value: str) -> str:
    """Where a merged image's rows sit in a 1-D RoPE model: "original" (their unmerged
    positions, with gaps; the RTPrune reference) or "consecutive" (renumbered)."""
    if value not in MERGE_POSITIONS:
        raise ValueError(f"merge_positions must be 'original' or 'consecutive', got {value!r}")
    return value


MERGE_SCORE_CHOICES = ("auto", *B.MERGE_SCORES)
# Projectors whose image tokens RTPrune's L2-norm criterion was validated on (by its authors).
NORM_SCORE_PROJECTORS = frozenset({"deepseekocr"})


def check_merge_score(value: str) -> int:
    """Which rows a keep ratio keeps: "norm" (largest L2 norms, RTPrune) or "duplicates"
    (fewest near-duplicates on the page: blank paper goes first)."""
    if value not in B.MERGE_SCORES:
        raise ValueError(f"merge_score must be one of {', '.join(map(repr, B.MERGE_SCORES))}, "
                         f"got {value!r}")
    return B.MERGE_SCORES[value]


def resolve_merge_score(value: str, projector_type: str) -> str:
    """"auto": RTPrune's "norm" on the projectors it was validated on (DeepSeek-OCR), "duplicates"
    on every other (on Qwen2.5-VL-style reader pages the norm drops characters first:
    docs/benchmarks.md). Other values are checked and returned."""
    if value == "auto":
        return "norm" if projector_type in NORM_SCORE_PROJECTORS else "duplicates"
    if value not in B.MERGE_SCORES:
        raise ValueError(f"merge_score must be one of {', '.join(map(repr, MERGE_SCORE_CHOICES))}, "
                         f"got {value!r}")
    return value


def merge_rows(embd, kind=None, pixels=None, patch: int = 0, merge="auto", threads: int = 1,
               score: str = "norm"):
    """Merge the rows of `embd` (n x d float32) as mtmd does for an image.

    kind: per row 0 content, 1 newline marker, 2 other marker (default all content);
    pixels: H x W x 3 float in [-1, 1] for the text-density term (dynamic ratio), with `patch`
    pixels per token side; score: see check_merge_score.
    Returns (rows, kept_ids, (ratio, r_sim, r_info))."""
    import numpy as np

    mode, ratio = parse_merge(merge)
    score_id = check_merge_score(score)
    e = np.ascontiguousarray(embd, dtype=np.float32)
    if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
        raise ValueError(f"embd must be a non-empty n x d array, got shape {e.shape}")
    n, d = e.shape
    k = np.zeros(n, np.uint8) if kind is None else np.ascontiguousarray(kind, dtype=np.uint8)
    if k.shape != (n,) or k.max(initial=0) > 2:
        raise ValueError("kind must hold one value in {0, 1, 2} per row")
    F, I = ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int32)
    px, w, h = None, 0, 0
    if pixels is not None:
        pa = np.ascontiguousarray(pixels, dtype=np.float32)
        if pa.ndim != 3 or pa.shape[2] != 3:
            raise ValueError(f"pixels must be H x W x 3, got shape {pa.shape}")
        h, w = pa.shape[:2]
        px = pa.ctypes.data_as(F)
    out = np.zeros((n, d), np.float32)
    keep = np.zeros(n, np.int32)
    terms = (ctypes.c_double * 3)()
    m = B.merge.mtmd_merge_rows(e.ctypes.data_as(F), n, d, k.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                px, w, h, int(patch), mode, ratio, score_id, int(threads),
                                out.ctypes.data_as(F), keep.ctypes.data_as(I), terms)
    if m < 0:
        raise RuntimeError(f"mtmd_merge_rows failed (code {m})")
    return out[:m], keep[:m], tuple(terms)
