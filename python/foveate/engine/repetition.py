"""Stop a generation that has started to loop: the known failure of OCR VLMs (the same line,
word or token emitted until the token limit, reported in the trackers of olmOCR, MinerU,
dots.ocr, PaddleOCR-VL and llama.cpp alike), which costs the whole output budget per page.

The tail of the output loops with period p when every one of its tokens equals the one p
before it. The guard keeps, per period p <= max_period, how many consecutive tokens have
done so; the looping span is that count + p. It stops when a span reaches both `min_span`
tokens and `min_repeats` periods: long enough that real text (a rule of dashes, a column of
equal table cells) rarely gets there. O(max_period) per token.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepetitionGuard:
    min_span: int = 160       # tokens the repeated tail must cover
    min_repeats: int = 4      # times the period must occur in it
    max_period: int = 200     # longest repeated unit looked for (a long table row)

    def __post_init__(self):
        if self.min_span < 2 or self.min_repeats < 2 or self.max_period < 1:
            raise ValueError("repetition guard: min_span and min_repeats must be at least 2, "
                             "max_period at least 1")

    def start(self) -> "LoopDetector":
        return LoopDetector(self)


class LoopDetector:
    """Feed tokens one at a time; `push` returns how many trailing tokens to drop (the repeats
    after the first occurrence of the unit) once the output loops, else 0."""

    def __init__(self, guard: RepetitionGuard):
        self.g = guard
        self.toks: list[int] = []
        self.run = [0] * (guard.max_period + 1)   # run[p]: tail tokens equal to the one p back

    def push(self, tok: int) -> int:
        t = self.toks
        t.append(tok)
        n = len(t)
        g = self.g
        for p in range(1, min(g.max_period, n - 1) + 1):
            if t[-1] == t[-1 - p]:
                self.run[p] += 1
                span = self.run[p] + p
                if span >= g.min_span and span >= g.min_repeats * p:
                    return self.run[p]
            else:
                self.run[p] = 0
        return 0


class GuardedOutput:
    """The bytes generated so far, with the guard (None: off) watching their tokens. `add`
    returns True once the output loops; the repeats are then already cut from `out` (a
    stream that showed them token by token has shown them)."""

    def __init__(self, guard: RepetitionGuard | None):
        self.out = bytearray()
        self._lens: list[int] = []
        self._det = guard.start() if guard is not None else None

    def add(self, tok: int, piece: bytes) -> bool:
        self.out += piece
        if self._det is None:
            return False
        self._lens.append(len(piece))
        drop = self._det.push(tok)
        if not drop:
            return False
        cut = sum(self._lens[-drop:])
        del self.out[len(self.out) - cut:]
        del self._lens[-drop:]
        return True
