"""Every Engine setting and both GGUF headers, checked without loading anything."""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import controls as C
from .controls import FIXATION_SAMPLE
from .families import check_method, identify
from .kv_cache import kv_cache_type
from ..errors import ContextError, ModelError, ProjectorError
from ..inputs.gguf_check import read_gguf_info


def merges(merge) -> bool:
    """Whether a merge setting drops rows (off and keep ratio 1 leave the image as stock)."""
    return merge not in (None, "off", 0, 1, 1.0)


def threads_or_all(n: int | None) -> int:
    return n if n and n > 0 else max(1, os.cpu_count() or 1)


@dataclass
class Checked:
    """What check_settings read from the GGUF headers, for the Engine that goes on to load."""
    model_name: str
    projector_type: str
    patch_size: int
    merge_score: str
    family: object
    type_k: int
    type_v: int


def check_settings(model, mmproj, *, n_ctx: int = 4096, n_batch: int = 2048, fixation=None,
                   fixation_k_min: int = 16, focal_layers=None, fixation_max_tokens: int = 8,
                   fixation_dilation: int = 0, fixation_refresh: int = 1,
                   fixation_sample: int = FIXATION_SAMPLE, merge=None,
                   merge_positions: str = "original", merge_score: str = "auto",
                   image_min_tokens=None, image_max_tokens=None, cache_type_k: str = "f16",
                   cache_type_v: str = "f16", vision_bf16: bool = True) -> Checked:
    """Every Engine setting and both files' headers, checked without loading anything: the
    Engine runs it first, and a driver that sends the loading elsewhere (read --ray) runs it
    so a bad value fails there, once, and not in every worker after a model load."""
    for what, v in (("image_min_tokens", image_min_tokens), ("image_max_tokens", image_max_tokens)):
        if v is not None and (int(v) != v or v < 1):
            raise ValueError(f"{what} must be a positive integer, got {v!r}")
    if image_min_tokens and image_max_tokens and image_min_tokens > image_max_tokens:
        raise ValueError(f"image_min_tokens {image_min_tokens} > image_max_tokens {image_max_tokens}")
    if not isinstance(vision_bf16, bool):
        raise ValueError(f"vision_bf16 must be True (where the CPU supports it) or False, "
                         f"got {vision_bf16!r}")
    # as llama.cpp's -ctk / -ctv (a quantized V cache needs flash attention)
    type_k, type_v = kv_cache_type(cache_type_k), kv_cache_type(cache_type_v)
    minfo = read_gguf_info(model, ModelError, "model")
    if minfo.arch == "clip":
        raise ModelError(f"model file is an image projector (mmproj), not a language "
                         f"model: {model}")
    projector_type, patch_size = "", 14   # text-only engine: "auto" scores -> "duplicates"
    if mmproj is not None:  # None: text-only engine (benchmarks with synthetic images)
        pinfo = read_gguf_info(mmproj, ProjectorError, "projector")
        if pinfo.arch != "clip":
            raise ProjectorError(f"projector file is not an mmproj (architecture "
                                 f"'{pinfo.arch}'): {mmproj}")
        projector_type = pinfo.projector_type
        patch_size = int(pinfo.metadata.get("clip.vision.patch_size", 14) or 14)
    if n_ctx <= 0:
        raise ContextError(f"n_ctx must be positive, got {n_ctx}")
    if isinstance(n_batch, bool) or not isinstance(n_batch, int) or n_batch < 1:
        raise ValueError(f"n_batch (-b) must be an integer >= 1, got {n_batch!r}")
    # fixation's settings fail here, before anything loads, even with fixation off (the
    # focal layers against the header's layer count; llama.cpp's own count is checked again
    # once the model is loaded)
    C.check_fixation_ratio(fixation or 0.0)
    n_layer = minfo.metadata.get(f"{minfo.arch}.block_count")
    C.check_fixation_settings(fixation_k_min, focal_layers, fixation_max_tokens,
                              fixation_dilation, fixation_refresh, fixation_sample,
                              int(n_layer) if isinstance(n_layer, int) else None)
    from .merging import check_merge_positions, parse_merge, resolve_merge_score
    parse_merge(merge)
    check_merge_positions(merge_positions)
    merge_score = resolve_merge_score(merge_score, projector_type)
    # the OCR family (engine/families.py): presets, and the methods it refuses
    family = identify(minfo.metadata, projector_type)
    check_method(family, bool(fixation), merges(merge))
    return Checked(str(minfo.metadata.get("general.name", "")), projector_type, patch_size,
                   merge_score, family, type_k, type_v)
