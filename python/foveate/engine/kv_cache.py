"""KV cache types by llama.cpp's -ctk / -ctv names. No native import at module level, so the
CLI can list the choices without loading the libraries."""
from __future__ import annotations

KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def kv_cache_type(name: str) -> int:
    """The ggml type of a KV cache type name."""
    if name not in KV_CACHE_TYPES:
        raise ValueError(f"KV cache type must be one of {', '.join(KV_CACHE_TYPES)}, got {name!r}")
    from ..native import bindings as B

    return B.ggml_type(name)
