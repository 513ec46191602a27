"""`foveate bench --draft`: what draft-verified decoding (engine/drafts.py) costs and gains.

Two tables, both after one page's prefill (a real page, or N synthetic image tokens for
models without a usable projector), side by side in one run:
- t(k): one ubatch of k tokens with logits on every row, relative to a one-token step (k = 1);
  the ceiling with a perfect draft at k is k / t(k) (every row accepted);
- drafts: plain greedy decoding (the engine's own loop), then drafted decoding with drafts made
  from that plain output with a share of its characters replaced (0, 1, 2, 5, 10% CER, seeded),
  an unrelated text, and the output's own repeats only; decode tok/s, the ratio to plain,
  proposed and accepted tokens, and whether the text equals plain decoding's.
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..engine.core import Engine, Sampling
from ..engine.result import Stats
from ..inputs.draft_sources import DraftText
from ..native import bindings as B
from .bench import _prefill

llama = B.llama

KS = (1, 2, 4, 8, 16, 32)
CERS = (0.0, 0.01, 0.02, 0.05, 0.10)
# an unrelated draft: English prose that no page here holds
UNRELATED = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
             "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
             "incredulity, it was the season of Light, it was the season of Darkness.\n") * 8


def verify_costs(eng: Engine, image=None, image_tokens: int = 0, ks=KS,
                 repetitions: int = 5) -> dict[int, float]:
    """Median ms of one ubatch of k tokens (logits on every row) after the page, per k."""
    n_past, _ = _prefill(eng, image, image_tokens, max(ks) + 1)
    mem = llama.llama_get_memory(eng._ctx)
    batch = llama.llama_batch_init(max(ks), 0, 1)
    rng = np.random.default_rng(0)
    n_vocab = llama.llama_vocab_n_tokens(eng._vocab)
    out = {}
    try:
        for k in ks:
            times = []
            for rep in range(repetitions + 1):   # the first is a warm-up
                batch.n_tokens = k
                for i, t in enumerate(rng.integers(100, min(n_vocab, 30000), k)):
                    batch.token[i] = int(t)
                    batch.pos[i] = n_past + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = True
                t0 = time.perf_counter()
                if llama.llama_decode(eng._ctx, batch) != 0:
                    raise RuntimeError(f"llama_decode failed for k = {k}")
                eng.logits(k - 1)   # the logits are read back as a verification step reads them
                if rep:
                    times.append((time.perf_counter() - t0) * 1e3)
                llama.llama_memory_seq_rm(mem, 0, n_past, -1)
            out[k] = statistics.median(times)
    finally:
        llama.llama_batch_free(batch)
    return out


def inject_errors(text: str, rate: float, seed: int = 0) -> str:
    """`text` with about `rate` of its characters (not line breaks) replaced at random."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,"
    return "".join(rng.choice(alphabet) if c != "\n" and rng.random() < rate else c
                   for c in text)


@dataclass
class DraftRow:
    draft: str
    tokens: int
    decode_ms: float
    proposed: int = 0
    accepted: int = 0
    steps: int = 0
    same_text: bool = True

    @property
    def tok_s(self) -> float:
        return self.tokens / (self.decode_ms / 1e3) if self.decode_ms else 0.0


def _decode(eng: Engine, image, image_tokens: int, n_decode: int, draft: DraftText | None):
    n_past, _ = _prefill(eng, image, image_tokens, n_decode)
    st = Stats()
    s = Sampling(repetition_guard=None)   # greedy, no guard: the same tokens every run
    if draft is None:
        text = eng._generate(n_past, n_past, n_decode, s, st)
    else:
        text = eng._generate_drafted(n_past, n_past, n_decode, s, st, draft)
    return text, st


def draft_rows(eng: Engine, image=None, image_tokens: int = 0, n_decode: int = 200,
               cers=CERS, repetitions: int = 1) -> list[DraftRow]:
    """Plain decoding, then drafts made from its output (see the module's docstring)."""
    text, st = _decode(eng, image, image_tokens, n_decode, None)   # warm-up and the reference
    plain = []
    for _ in range(repetitions):
        again, st = _decode(eng, image, image_tokens, n_decode, None)
        plain.append(st.decode_ms)
    rows = [DraftRow("none (plain decoding)", st.tokens_generated, statistics.median(plain),
                     same_text=again == text)]
    drafts = [(f"its text, {c:.0%} characters wrong" if c else "its text", inject_errors(text, c))
              for c in cers]
    drafts += [("an unrelated text", UNRELATED), ("self (the output's own repeats)", "")]
    for name, d in drafts:
        runs = []
        for _ in range(repetitions):
            got, st = _decode(eng, image, image_tokens, n_decode,
                              DraftText(d, "text" if d else "self"))
            runs.append((st.decode_ms, got, st))
        ms, got, st = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        rows.append(DraftRow(name, st.tokens_generated, ms, st.draft_tokens, st.draft_accepted,
                             st.draft_steps, got == text))
    return rows


def format_costs(costs: dict[int, float]) -> str:
    one = costs[min(costs)]
    head = "| k | " + " | ".join(str(k) for k in costs) + " |"
    sep = "|---|" + "---|" * len(costs)
    ms = "| ms | " + " | ".join(f"{v:.2f}" for v in costs.values()) + " |"
    rel = "| t(k) / t(1) | " + " | ".join(f"{v / one:.2f}x" for v in costs.values()) + " |"
    ceil = "| ceiling k / t(k) | " + " | ".join(f"{k * one / v:.2f}x" for k, v in costs.items()) + " |"
    return "\n".join([head, sep, ms, rel, ceil])


def format_rows(rows: list[DraftRow]) -> str:
    base = rows[0].tok_s
    out = ["| draft | tokens | decode tok/s | vs plain | proposed | accepted | accepted per step "
           "| text = plain |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r.accepted} ({r.accepted / r.proposed:.0%})" if r.proposed else "0"
        per = f"{r.accepted / r.steps:.1f}" if r.steps else "-"
        out.append(f"| {r.draft} | {r.tokens} | {r.tok_s:.1f} | {r.tok_s / base:.2f}x | "
                   f"{r.proposed} | {acc} | {per} | {'yes' if r.same_text else 'NO'} |")
    return "\n".join(out)
