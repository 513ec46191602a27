"""foveate's settings applied to raw llama.cpp / mtmd contexts: fixation on a llama_context,
token merging on an mtmd_context, and reading their last results back.

Shared by the Engine (foveate's own reader) and `foveate.enable` (an existing
llama-cpp-python `Llama` and its `MTMDChatHandler`), so both validate alike and raise the
same errors.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

from ..native import bindings as B

llama = B.llama

# fixation's compensation sample: image cells per row standing in for the unselected ones
# (docs/benchmarks.md, "Fixation: compensation"); the CLI repeats it as a literal
FIXATION_SAMPLE = 64


def _integer(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {span}, got {value}")
    return int(value)


def focal_layer_list(focal_layers) -> list[int] | None:
    """None / "auto" -> None (the calibrated or default layer); else a list of layer indices
    (an int, ints, or "7,12"); anything else is refused."""
    if focal_layers in (None, "auto", ""):
        return None
    if isinstance(focal_layers, str):
        try:
            focal_layers = [int(x) for x in focal_layers.split(",")]
        except ValueError:
            raise ValueError(f"focal layers are 'auto' or layer indices like 7,12, not "
                             f"{focal_layers!r}") from None
    if isinstance(focal_layers, int):
        focal_layers = [focal_layers]
    out = [_integer("a focal layer", f, 0) for f in focal_layers]
    if not out:
        raise ValueError("focal layers: give at least one layer index, or 'auto'")
    return out


def check_fixation_settings(k_min=16, focal_layers=None, max_tokens=8, dilation=0, refresh=1,
                            sample=FIXATION_SAMPLE, n_layer: int | None = None) -> list[int] | None:
    """Every fixation setting, checked whether or not fixation is on: a value that means
    nothing is refused, not silently ignored until the day fixation is switched on. Returns
    the focal layers as a list (None = auto)."""
    _integer("fixation k_min", k_min, 1)
    _integer("fixation max_tokens", max_tokens, 1)
    _integer("fixation dilation", dilation, 0)
    _integer("fixation refresh interval", refresh, 1)
    _integer("fixation sample", sample, 0, 4096)
    focal = focal_layer_list(focal_layers)
    if focal and n_layer is not None:
        bad = [f for f in focal if f >= n_layer]
        if bad:
            raise ValueError(f"focal layers {bad} out of range: the model has {n_layer} layers "
                             f"(0-{n_layer - 1})")
    return focal


def check_fixation_ratio(ratio) -> float:
    """The share of image tokens attended: a number in [0, 1] (0 = off)."""
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"fixation ratio must be a number in [0, 1], got {ratio!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"fixation ratio must be in [0, 1], got {ratio}")
    return ratio


def apply_fixation(ctx, model, model_path: str, ratio: float, k_min: int = 16, focal_layers=None,
                   max_tokens: int = 8, dilation: int = 0, refresh: int = 1,
                   sample: int = FIXATION_SAMPLE) -> float:
    """Set decode-time visual KV selection on llama_context `ctx` (0 = off). `focal_layers`
    None / "auto": the layer `foveate calibrate` chose for `model_path`, else one layer at a
    third of the depth. Returns the ratio set."""
    ratio = check_fixation_ratio(ratio)
    n_layer = llama.llama_model_n_layer(model)
    focal = check_fixation_settings(k_min, focal_layers, max_tokens, dilation, refresh, sample,
                                    n_layer)
    if focal is None:  # calibrated for this model file, else the default
        from .focal_store import saved_focal_layers
        focal = saved_focal_layers(model_path) if ratio > 0 else None
    focal = list(focal or [])
    arr = (ctypes.c_int32 * max(1, len(focal)))(*[int(f) for f in focal])
    rc = B.fixation.llama_fixation_set(ctx, ratio, int(k_min), arr, len(focal), int(max_tokens))
    if rc != 0:
        raise ValueError(f"llama_fixation_set rejected ratio={ratio} k_min={k_min} "
                         f"focal={focal} (code {rc})")
    if ratio > 0:
        B.fixation.llama_fixation_set_dilation(ctx, int(dilation))
        B.fixation.llama_fixation_set_refresh(ctx, int(refresh))
        B.fixation.llama_fixation_set_sample(ctx, int(sample))
    return ratio


@dataclass
class FixationStats:
    """Since the last reset (llama_fixation_reset_stats): per decode row, image tokens the
    focal layers selected and attended (mean over layers), the image tokens of the row's
    sequence, how many rows were counted, and the focal layers used."""
    selected: float = 0.0
    attended: float = 0.0
    image_tokens: float = 0.0
    rows: int = 0
    focal_layers: list = field(default_factory=list)
    host_us: float = 0.0   # host time fixation added per ubatch (plans, inputs, read-backs)


def fixation_stats(ctx) -> FixationStats:
    sel, img, rows = ctypes.c_double(), ctypes.c_double(), ctypes.c_int64()
    focal = (ctypes.c_int32 * 64)()
    n = B.fixation.llama_fixation_get_stats(ctx, ctypes.byref(sel), ctypes.byref(img),
                                            ctypes.byref(rows), focal, 64)
    return FixationStats(selected=sel.value, attended=B.fixation.llama_fixation_get_attended(ctx),
                         image_tokens=img.value, rows=rows.value, focal_layers=list(focal[:max(0, n)]),
                         host_us=B.fixation.llama_fixation_get_host_us(ctx))


def fixation_selection(ctx, seq_id: int = 0) -> list[int]:
    """Image-token indices (row-major on the page grid) attended at the last step."""
    n = B.fixation.llama_fixation_get_last(ctx, seq_id, None, 0)
    out = (ctypes.c_int32 * max(1, n))()
    n = B.fixation.llama_fixation_get_last(ctx, seq_id, out, n)
    return list(out[:n])


def apply_merge(mctx, projector_type: str, merge, positions: str | None = None,
                score: str | None = None) -> tuple[object, str | None, str | None]:
    """Set prefill token merging (RTPrune) on mtmd_context `mctx`: None/"off", "auto" (ratio
    per page) or a keep ratio in (0, 1]. positions ("original" / "consecutive", None =
    unchanged): where a 1-D RoPE model decodes the kept rows. score ("auto" / "norm" /
    "duplicates", None = unchanged); "auto" resolves by `projector_type`. Returns (merge as
    set: "off", "auto" or the ratio; positions; the resolved score)."""
    from .merging import check_merge_positions, check_merge_score, parse_merge, resolve_merge_score

    mode, ratio = parse_merge(merge)
    if positions is not None:
        check_merge_positions(positions)
    if score is not None:
        score = resolve_merge_score(score, projector_type)
        if B.merge.mtmd_merge_set_score(mctx, check_merge_score(score)) != 0:
            raise ValueError(f"mtmd_merge_set_score rejected {score!r}")
    if B.merge.mtmd_merge_set(mctx, mode, ratio) != 0:
        raise ValueError(f"mtmd_merge_set rejected merge={merge!r}")
    if positions is not None and B.merge.mtmd_merge_set_1d_positions(mctx, int(positions == "consecutive")):
        raise ValueError(f"mtmd_merge_set_1d_positions rejected {positions!r}")
    return {B.MERGE_OFF: "off", B.MERGE_DYNAMIC: "auto"}.get(mode, ratio), positions, score


@dataclass
class MergeResult:
    """The last image mtmd merged: image tokens before and after, the keep ratio chosen,
    the dynamic ratio's two terms, and the merge's own time."""
    tokens_before: int
    tokens_after: int
    ratio: float
    r_sim: float
    r_info: float
    merge_ms: float


def merge_last(mctx) -> MergeResult | None:
    """None when merging was off (or no image was encoded since it was set)."""
    nb, na = ctypes.c_int32(), ctypes.c_int32()
    r, rs, ri, ms = ctypes.c_double(), ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    if B.merge.mtmd_merge_get_last(mctx, ctypes.byref(nb), ctypes.byref(na), ctypes.byref(r),
                                   ctypes.byref(rs), ctypes.byref(ri), ctypes.byref(ms)) != 0:
        return None
    return MergeResult(nb.value, na.value, r.value, rs.value, ri.value, ms.value)


def chunk_kept(chunk) -> list[int] | None:
    """An image chunk's kept rows (original ids, ascending) once it was merged; None when it
    was not merged."""
    n = B.merge.mtmd_merge_chunk_kept(chunk, None, 0)
    if n < 0:
        return None
    out = (ctypes.c_int32 * max(1, n))()
    B.merge.mtmd_merge_chunk_kept(chunk, out, n)
    return list(out[:n])


def merge_kept(mctx) -> list[int]:
    """Original image-token ids kept by the last merge (ascending); [] if none merged."""
    n = B.merge.mtmd_merge_get_kept(mctx, None, 0)
    if n < 0:
        return []
    out = (ctypes.c_int32 * max(1, n))()
    B.merge.mtmd_merge_get_kept(mctx, out, n)
    return list(out[:n])
