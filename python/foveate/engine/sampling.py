"""How a page's tokens are chosen: the Sampling settings (checked when made) and llama.cpp's
sampler chain for them."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..native import bindings as B
from .repetition import RepetitionGuard

llama = B.llama


@dataclass
class Sampling:
    """Greedy by default (temperature 0), as OCR wants; the usual knobs otherwise."""
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int = 0xF0FEA7E
    # stop when the output starts looping (stop_reason "repetition"); None = off
    repetition_guard: RepetitionGuard | None = RepetitionGuard()

    def __post_init__(self):
        # checked even at temperature 0, where top-k/p and min-p are not used: a meaningless
        # value is refused, not ignored until sampling is switched on
        def number(name, v, ok, what):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not ok(v):
                raise ValueError(f"{name} must be {what}, got {v!r}")
        number("temperature", self.temperature, lambda v: v >= 0, "a number >= 0")
        number("top_k", self.top_k, lambda v: v >= 0 and int(v) == v, "an integer >= 0 (0 = off)")
        number("top_p", self.top_p, lambda v: 0 < v <= 1, "in (0, 1]")
        number("min_p", self.min_p, lambda v: 0 <= v <= 1, "in [0, 1]")
        number("repeat_penalty", self.repeat_penalty, lambda v: v > 0, "a number > 0 (1 = off)")
        number("repeat_last_n", self.repeat_last_n, lambda v: v >= -1 and int(v) == v,
               "an integer >= -1 (-1 = the context, 0 = off)")
        number("seed", self.seed, lambda v: 0 <= v < 2**32 and int(v) == v,
               "an integer in [0, 2^32)")

    @property
    def greedy(self) -> bool:
        """The most likely token every step, nothing else deciding: an argmax of the logits
        picks what llama.cpp's greedy sampler picks (the first of equal maxima), without
        copying the vocabulary into a candidate array each step (~1-3 ms at 151k tokens)."""
        return self.temperature <= 0 and self.repeat_penalty == 1.0


def sampler_chain(s: Sampling, n_vocab: int):
    """llama.cpp's sampler chain for `s` (the caller frees it)."""
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    add = lambda smp: llama.llama_sampler_chain_add(chain, smp)
    if s.repeat_penalty != 1.0:
        add(llama.llama_sampler_init_penalties(n_vocab, s.repeat_last_n, s.repeat_penalty,
                                               0.0, 0.0))
    if s.temperature <= 0:
        add(llama.llama_sampler_init_greedy())
    else:
        add(llama.llama_sampler_init_top_k(s.top_k))
        add(llama.llama_sampler_init_top_p(s.top_p, 1))
        add(llama.llama_sampler_init_min_p(s.min_p, 1))
        add(llama.llama_sampler_init_temp(s.temperature))
        add(llama.llama_sampler_init_dist(s.seed))
    return chain
