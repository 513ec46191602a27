"""High-level API: `Reader(model, mmproj).read(image) -> Result`."""
from __future__ import annotations

import os

from ..engine.core import FIXATION_SAMPLE, Engine, Result, Sampling


class Reader:
    """Reads pages with a GGUF OCR model and its image projector.

    >>> r = Reader("model.gguf", "mmproj.gguf")
    >>> print(r.read("page.png").text)
    """

    def __init__(self, model: str | os.PathLike, mmproj: str | os.PathLike, *,
                 n_gpu_layers: int = 0, n_ctx: int = 4096, threads: int | None = None,
                 n_batch: int = 2048, flash_attn: bool | None = None,
                 fixation: float | None = None, fixation_k_min: int = 16,
                 focal_layers: list[int] | None = None, fixation_dilation: int = 0,
                 fixation_refresh: int = 1, fixation_sample: int = FIXATION_SAMPLE, merge=None,
                 merge_positions: str = "original", merge_score: str = "auto"):
        """fixation: share of image tokens attended per decode step (e.g. 0.05; None/0 =
        off, the stock computation). Flash attention defaults to on when fixation is on.
        fixation_refresh: the focal layers re-select every R-th step (1 = every step); in
        between they attend to the previous selection and keep it.
        fixation_sample: that many fixed image tokens, spread over the page, also attend, each
        standing for its share of the image tokens not selected (compensation for the early
        layers' diffuse attention; 0 = off).
        merge: prefill token merging (RTPrune): a keep ratio in (0, 1] such as 0.84, "auto"
        (a ratio per page), or None/"off" (the stock computation). Fixation then selects
        among the merged tokens.
        merge_positions: for 1-D RoPE models (DeepSeek-OCR...), "original" keeps the merged
        image's unmerged positions (gaps where rows were merged away, as the RTPrune
        reference), "consecutive" renumbers the kept rows. M-RoPE models always keep theirs.
        merge_score: which image tokens a keep ratio keeps: "norm" (the largest L2 norms, as
        RTPrune), "duplicates" (the fewest near-duplicates on the page, so blank paper goes
        first) or "auto" (the default: "norm" on DeepSeek-OCR's projector, where RTPrune
        validated it, "duplicates" on every other; on the bundled Qwen2.5-VL-style readers the
        norm drops characters first, see docs/benchmarks.md)."""
        self.engine = Engine(model, mmproj, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx,
                             threads=threads, n_batch=n_batch, flash_attn=flash_attn,
                             fixation=fixation, fixation_k_min=fixation_k_min,
                             focal_layers=focal_layers, fixation_dilation=fixation_dilation,
                             fixation_refresh=fixation_refresh,
                             fixation_sample=fixation_sample, merge=merge,
                             merge_positions=merge_positions, merge_score=merge_score)

    def read(self, image, prompt: str | None = None, max_tokens: int = 1024, *,
             temperature: float = 0.0, top_k: int = 40, top_p: float = 0.95,
             min_p: float = 0.05, repeat_penalty: float = 1.0, seed: int = 0xF0FEA7E) -> Result:
        """Transcribe one page: a path, bytes or a PIL image. Greedy unless temperature > 0."""
        s = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                     repeat_penalty=repeat_penalty, seed=seed)
        return self.engine.read(image, prompt=prompt, max_tokens=max_tokens, sampling=s)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
