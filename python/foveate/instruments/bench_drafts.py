"""`foveate bench --draft`: what draft-verified decoding (engine/drafts.py) costs and gains.

Two tables, both after one page's prefill (a real page, or N synthetic image tokens for
models without a usable projector), side by side in one run:
- t(k): one ubatch of k tokens with logits on every row, relative to a one-token step (k = 1);
  the ceiling with a perfect draft at k is k / t(k) (every row accepted);
- drafts: plain greedy decoding (the engine's own loop, and the draft loop with no proposals:
  the same per-step work as a drafted step but for the extra rows), then drafted decoding with
  drafts made from that output with a share of its characters replaced (0, 1, 2, 5, 10% CER,
  seeded), an unrelated text, and the output's own repeats only; decode tok/s, the ratio to
  the engine's loop, proposed and accepted tokens, and whether the text equals plain
  decoding's. A random-weight model's output does not tokenize back to its own tokens, so
  there the errors are put in tokens (each replaced with the chance one of its ~4 characters
  is wrong).
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..engine.core import Engine, Sampling
from ..engine.drafts import DraftMatcher, fill_rows, generate_drafted, tokenize_draft
from ..engine.repetition import GuardedOutput
from ..engine.result import Stats
from ..inputs.draft_sources import DraftText
from ..native import bindings as B
from .bench import _prefill

llama = B.llama

KS = (1, 2, 4, 8, 16, 32)
CERS = (0.0, 0.01, 0.02, 0.05, 0.10)
CHARS_PER_TOKEN = 4.0   # English text in a Qwen2-style BPE vocabulary, about (token-level drafts)
# an unrelated draft: English prose that no page here holds
UNRELATED = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
             "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
             "incredulity, it was the season of Light, it was the season of Darkness.\n") * 8


def _refuse_recurrent(eng: Engine) -> None:
    if eng.recurrent:
        raise ValueError("bench --draft verifies drafts, which need a cache that can drop "
                         "rejected tokens; this model has recurrent layers (a hybrid)")


def verify_costs(eng: Engine, image=None, image_tokens: int = 0, ks=KS,
                 repetitions: int = 5) -> dict[int, float]:
    """Median ms of one ubatch of k tokens (logits on every row) after the page, per k."""
    _refuse_recurrent(eng)
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
                fill_rows(batch, rng.integers(100, min(n_vocab, 30000), k), n_past)
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


def _plain(eng: Engine, image, image_tokens: int, n_decode: int) -> tuple[str, Stats]:
    """Greedy decoding after the page by the engine's own loop (one decode per token, the
    argmax of its logits): what a read without a draft runs."""
    n_past, _ = _prefill(eng, image, image_tokens, n_decode)
    st = Stats()
    return eng._generate(n_past, n_past, n_decode, Sampling(repetition_guard=None), st), st


def _drafted(eng: Engine, image, image_tokens: int, n_decode: int, draft=None):
    """(text, tokens, Stats) of greedy decoding after the page by the draft loop, with
    `draft` (a DraftText, a token list, or None: no proposals at all)."""
    n_past, _ = _prefill(eng, image, image_tokens, n_decode)
    st = Stats()

    class Recording(GuardedOutput):
        def add(self, tok, piece):
            tokens.append(tok)
            return super().add(tok, piece)

    tokens: list[int] = []
    gen = Recording(None)   # no guard: the same tokens every run
    if draft is None:
        matcher = DraftMatcher([], self_lookup=False)
    elif isinstance(draft, DraftText):
        matcher = DraftMatcher(tokenize_draft(eng, draft.text))
    else:
        matcher = DraftMatcher(list(draft))
    ds = generate_drafted(eng, n_past, n_past, n_decode, st, gen, matcher)
    st.draft_tokens, st.draft_accepted, st.draft_steps = ds.drafted, ds.accepted, ds.steps
    return gen.out.decode("utf-8", errors="replace"), tokens, st


def _token_errors(tokens: list[int], cer: float, n_vocab: int, seed: int = 0) -> list[int]:
    """A token-level stand-in for a `cer` character error rate: each token replaced with the
    chance that one of its ~CHARS_PER_TOKEN characters is wrong."""
    rng = random.Random(seed)
    p = 1 - (1 - cer) ** CHARS_PER_TOKEN
    return [rng.randrange(100, n_vocab) if rng.random() < p else t for t in tokens]


def draft_rows(eng: Engine, image=None, image_tokens: int = 0, n_decode: int = 200,
               cers=CERS, repetitions: int = 1) -> tuple[list[DraftRow], str]:
    """Plain decoding, then drafts made from its output (see the module's docstring); and how
    the drafts were made ("text": characters replaced in the output's text; "tokens": the
    output's text does not tokenize back to its tokens, as a random-weight model's does not,
    so tokens are replaced instead)."""
    _refuse_recurrent(eng)
    _plain(eng, image, image_tokens, n_decode)   # warm-up
    t_plain = []
    for _ in range(repetitions):
        text, st = _plain(eng, image, image_tokens, n_decode)
        t_plain.append(st.decode_ms)
    rows = [DraftRow("none (the engine's loop)", st.tokens_generated, statistics.median(t_plain))]
    ref, tokens, st = _drafted(eng, image, image_tokens, n_decode)
    rows.append(DraftRow("none (the draft loop, no proposals)", st.tokens_generated, st.decode_ms,
                         same_text=ref == text))
    kind = "text" if tokenize_draft(eng, ref) == tokens else "tokens"
    n_vocab = llama.llama_vocab_n_tokens(eng._vocab)
    drafts = []
    for c in cers:
        name = f"its text, {c:.0%} characters wrong" if c else "its text"
        drafts.append((name, DraftText(inject_errors(ref, c), "text") if kind == "text"
                       else _token_errors(tokens, c, n_vocab)))
    drafts += [("an unrelated text", DraftText(UNRELATED, "text")),
               ("self (the output's own repeats)", DraftText("", "self"))]
    for name, d in drafts:
        runs = []
        for _ in range(repetitions):
            got, _, st = _drafted(eng, image, image_tokens, n_decode, d)
            runs.append((st.decode_ms, got, st))
        ms, got, st = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        rows.append(DraftRow(name, st.tokens_generated, ms, st.draft_tokens, st.draft_accepted,
                             st.draft_steps, got == text))
    return rows, kind


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
