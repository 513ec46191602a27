"""Draft-verified greedy decoding: the page's text, drafted by someone else (the caller's
text, a PDF's text layer, an OCR engine) or by the page's own output so far, checked by the
model many tokens per weight read, with exactly the tokens plain greedy decoding picks.

A step feeds the model's next token (decided, not yet decoded) plus up to k proposed tokens
as one ubatch with logits on every row. Row i's argmax is the model's token after input i:
the proposal is accepted while it equals those argmaxes, the first row that disagrees gives
the model's own next token, and the rejected cells are removed from the KV cache. So every
token emitted is an argmax of the same prefix plain decoding would see; only the kernels
differ (several rows at a time), which can flip a near-tie (README: "Drafts").

Proposals (DraftMatcher): the draft, tokenized with the model's own tokenizer, is followed
with a cursor; while the output agrees with the draft the next k draft tokens are proposed;
when it does not, the cursor re-synchronises on the longest suffix of the output (up to
MAX_NGRAM tokens, at least MIN_NGRAM) found in the draft near the cursor, then anywhere. With
nothing from the draft, the output's own history is searched the same way (llama.cpp's lookup
decoding: repeated headers, table rules, numbering). k adapts: k + 1 (the step's rows) doubles
after a step that accepts every proposed token and halves after one that accepts none; a single proposed token
missed sends the matcher to rest for 1, 2, 4 ... 16 plain steps, so a useless draft costs
little.
"""
from __future__ import annotations

import codecs
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError
from ..native import bindings as B

llama = B.llama

MAX_NGRAM = 6      # the longest output suffix looked up in the draft
MIN_NGRAM = 2      # shorter suffixes match too much text by chance
# k proposed tokens make k + 1 rows; k + 1 a power of two: ggml's x86 Q4_K gemm takes rows in
# groups of 4 and each row left over costs a pass of its own over the weights (3B Q4_K_M,
# 2 threads: 4 rows 77 ms, 5 rows 96; 16 rows 220, 17 rows 269; docs/benchmarks.md)
K_START, K_MAX = 3, 15


@dataclass
class DraftStats:
    source: str = ""          # "text" (the caller's), "self", ... ("" = no drafting)
    drafted: int = 0          # tokens proposed
    accepted: int = 0         # of those, accepted
    steps: int = 0            # verification ubatches (with a proposal)
    unsettled: int = 0        # proposed tokens the model agreed with but that were dropped:
                              # fixation's selection moved in an earlier row (see below)

    def count(self, matcher, proposal: list, agreed: int, accepted: int, source: str) -> None:
        """A verification step's outcome, told to the matcher too (k adapts to it)."""
        self.unsettled += agreed - accepted
        if not proposal:
            return
        self.steps += 1
        self.drafted += len(proposal)
        self.accepted += accepted
        if source and not self.source:
            self.source = source
        elif source and source not in self.source.split("+"):
            self.source += "+" + source
        matcher.advance(accepted, len(proposal), source)


class DraftMatcher:
    def __init__(self, draft: list[int], self_lookup: bool = True):
        self.draft = list(draft)
        self.cursor = 0            # the draft token expected next
        self.synced = True         # the output follows the draft at the cursor
        self.self_lookup = self_lookup
        self.k = K_START
        self.last_source = ""      # where the last proposal came from
        self.rest, self.rest_len = 0, 0   # steps left without proposals, and the next rest
        # the output's own n-grams -> the index just after their latest occurrence, kept up
        # to date as tokens come (a scan of the output each step cost more than a step of a
        # small model)
        self.seen: dict[tuple, int] = {}
        self.indexed = 0
        # n-gram -> the draft indices just after each of its occurrences (lookups per step
        # cost a dict access, not a scan of the draft)
        self.index: dict[tuple, list[int]] = {}
        for n in range(MIN_NGRAM, MAX_NGRAM + 1):
            for end in range(n, len(self.draft) + 1):
                self.index.setdefault(tuple(self.draft[end - n:end]), []).append(end)

    def propose(self, out: list[int]) -> tuple[list[int], str]:
        """Up to k tokens to follow `out` (the tokens so far, the last one decided, not yet
        decoded), and where they came from ("text", "self", or "" for none)."""
        got = self._propose(out)
        self.last_source = got[1]
        return got

    def _propose(self, out: list[int]) -> tuple[list[int], str]:
        k, d = self.k, self.draft
        if self.rest > 0:   # proposals kept failing: plain steps for a while
            self.rest -= 1
            return [], ""
        if d:
            if self.synced and self.cursor < len(d) and out and d[self.cursor] == out[-1]:
                self.cursor += 1           # the model's own token was the draft's next one
                if self.cursor < len(d):
                    return d[self.cursor:self.cursor + k], "text"
            else:
                at = self._resync(out)
                if at is not None:
                    self.cursor, self.synced = at, True
                    if at < len(d):
                        return d[at:at + k], "text"
                else:
                    self.synced = False
        if self.self_lookup:
            self._index_output(out[:-1])   # occurrences before the current suffix
            for n in range(min(MAX_NGRAM, len(out) - 1), MIN_NGRAM - 1, -1):
                at = self.seen.get(tuple(out[-n:]))
                if at is not None:
                    return out[at:at + k], "self"
        return [], ""

    def _index_output(self, out: list[int]) -> None:
        for end in range(max(self.indexed, MIN_NGRAM), len(out) + 1):
            for n in range(MIN_NGRAM, min(MAX_NGRAM, end) + 1):
                self.seen[tuple(out[end - n:end])] = end
        self.indexed = max(self.indexed, len(out) + 1)

    def _resync(self, out: list[int]) -> int | None:
        """The draft index after the longest suffix of `out` found in it, nearest the cursor."""
        for n in range(min(MAX_NGRAM, len(out)), MIN_NGRAM - 1, -1):
            ends = self.index.get(tuple(out[-n:]))
            if ends:
                return min(ends, key=lambda e: abs(e - self.cursor))
        return None

    def advance(self, accepted: int, proposed: int, source: str) -> None:
        """After a step: the cursor moves past what the model took of the draft (the next
        propose checks the model's own token against the draft's next); k + 1 doubles after a
        step that took every proposed token and halves after one that took none."""
        if source == "text":
            self.cursor += accepted
        if proposed and accepted == proposed:
            self.k = min(K_MAX, self.k * 2 + 1)     # 1, 3, 7, 15: rows 2, 4, 8, 16
            self.rest_len = 0
        elif proposed and accepted == 0:
            if self.k == 1:   # even one token missed: rest 1, 2, 4 ... 16 plain steps
                self.rest_len = min(16, max(1, self.rest_len * 2))
                self.rest = self.rest_len
            self.k = max(1, (self.k - 1) // 2)


def tokenize_draft(eng, text: str) -> list[int]:
    """The draft in the model's own tokens (no BOS, special tokens as plain text)."""
    raw = text.encode("utf-8", errors="replace")
    if not raw:
        return []
    n = len(raw) + 16
    buf = (llama.llama_token * n)()
    got = llama.llama_tokenize(eng._vocab, raw, len(raw), buf, n, False, False)
    if got < 0:
        buf = (llama.llama_token * -got)()
        got = llama.llama_tokenize(eng._vocab, raw, len(raw), buf, -got, False, False)
    return list(buf[:max(0, got)])


def step_rows(eng) -> int:
    """The most rows one verification step of a sequence takes: the decided token and up to
    K_MAX proposed; with fixation no more than a sparse ubatch takes per sequence (more would
    run dense, which is not what one-token steps run)."""
    return min(K_MAX + 1, eng.fixation_max_tokens) if eng.fixation else K_MAX + 1


def fill_rows(batch, tokens, n_past: int, seq: int = 0, at: int = 0) -> int:
    """`tokens` as sequence `seq`'s next rows from position n_past, written into the batch
    from row `at`, logits on every row (a verification step); the batch then ends after them
    (its n_tokens, returned)."""
    for i, t in enumerate(tokens):
        batch.token[at + i] = int(t)
        batch.pos[at + i] = n_past + i
        batch.n_seq_id[at + i] = 1
        batch.seq_id[at + i][0] = seq
        batch.logits[at + i] = True
    batch.n_tokens = at + len(tokens)
    return batch.n_tokens


def exact_rows(eng, n_rows: int, seq: int = 0) -> int:
    """How many leading rows of the last verification ubatch computed what one-token steps
    would have. Without fixation, all. With fixation, a row after the first starts from the
    selection made before the step (its warm start, and the kept focal list between refreshes)
    where a one-token step would start from the row before's: it counts only while every
    earlier row chose that same selection again (native/llama: llama_fixation_rows_exact)."""
    if not eng.fixation:
        return n_rows
    n = B.fixation.llama_fixation_rows_exact(eng._ctx, seq)
    return n_rows if n <= 0 else min(n, n_rows)   # 0: the ubatch ran dense, as one-token steps do


def verdict(eng, proposal: list, first_row: int = 0, seq: int = 0) -> tuple[int, int, int]:
    """(agreed, accepted, next token) after a verification step whose rows (the decided token,
    then `proposal`) start at batch row `first_row`: the proposed tokens equal to the model's
    picks, of those the ones taken (from exact rows only: row `accepted` gives the next token),
    and that token. With fixation the sequence then goes on from row `accepted`."""
    picks = [int(np.argmax(eng.logits(first_row + i))) for i in range(len(proposal) + 1)]
    agreed = 0
    while agreed < len(proposal) and picks[agreed] == proposal[agreed]:
        agreed += 1
    accepted = min(agreed, exact_rows(eng, len(proposal) + 1, seq) - 1)
    if eng.fixation:
        B.fixation.llama_fixation_keep_row(eng._ctx, seq, accepted)
    return agreed, accepted, picks[accepted]


def as_draft(draft):
    """A caller's draft as inputs.draft_sources.DraftText ("" = the output's own repeats)."""
    from ..inputs.draft_sources import DraftText

    return DraftText(draft, "text" if draft else "self") if isinstance(draft, str) else draft


def record_drafts(stats, ds: DraftStats, draft) -> None:
    """What the drafts did, into the page's Stats; the matcher's "text" channel named by
    where the draft came from."""
    used = [src for src in ("text", "self") if src in ds.source.split("+")]
    stats.draft_source = "+".join(draft.source if u == "text" else u for u in used) or "none"
    stats.draft_ms = draft.seconds * 1e3
    stats.draft_tokens = ds.drafted
    stats.draft_accepted, stats.draft_steps = ds.accepted, ds.steps
    stats.draft_unsettled = ds.unsettled


def generate_drafted(eng, n_past: int, n_cells: int, max_tokens: int, stats, gen, matcher,
                     on_token=None) -> DraftStats:
    """Greedy decoding from n_past (the prefill's logits in place) with proposals verified
    as above. gen: repetition.GuardedOutput; stats: the page's Stats (stop_reason, tokens,
    timings). Returns what the drafts did.

    With fixation each row gets its own selection; a proposed token is taken only from rows
    that ran as one-token steps would (exact_rows), and the sequence's fixation state goes on
    from the last row kept (the next warm start is its selection, the refresh count follows
    the tokens kept, not the rows computed)."""
    ds = DraftStats()
    max_rows = step_rows(eng)
    batch = llama.llama_batch_init(max_rows, 0, 1)
    mem = llama.llama_get_memory(eng._ctx)
    stream = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[int] = []
    t0 = time.perf_counter()

    def emit(tok: int) -> bool:
        """One token of the page, as plain decoding would take it; False ends the page."""
        if eng.is_stop(tok):
            stats.stop_reason = "eos"
            return False
        piece = eng._piece(tok)
        looping = gen.add(tok, piece)
        stats.tokens_generated += 1
        out.append(tok)
        if on_token is not None and on_token(stream.decode(piece)):
            stats.stop_reason = "cancelled"
            return False
        if looping:
            stats.stop_reason = "repetition"
            return False
        if stats.tokens_generated >= max_tokens:
            return False               # stop_reason stays "max_tokens"
        return True

    try:
        stats.stop_reason = "max_tokens"
        tok = int(np.argmax(eng.logits(-1)))
        while True:
            if not emit(tok):
                break
            if n_cells >= eng.n_ctx:
                stats.stop_reason = "n_ctx"
                break
            proposal, source = matcher.propose(out)
            # room: the context's cells and the tokens the page may still take
            room = min(eng.n_ctx - n_cells - 1, max_tokens - stats.tokens_generated)
            proposal = proposal[:max(0, min(room, max_rows - 1))]
            rows = [tok] + proposal
            fill_rows(batch, rows, n_past)
            if llama.llama_decode(eng._ctx, batch) != 0:
                raise DecodeError(f"llama_decode failed verifying {len(proposal)} drafted tokens "
                                  f"at position {n_past}")
            # the model's token after each row; the proposal stands while it agrees
            agreed, accepted, next_tok = verdict(eng, proposal)
            ds.count(matcher, proposal, agreed, accepted, source)
            if accepted < len(proposal):   # the rejected rows' cells go
                llama.llama_memory_seq_rm(mem, 0, n_past + 1 + accepted, -1)
            n_past += 1 + accepted
            n_cells += 1 + accepted
            if not all(emit(t) for t in proposal[:accepted]):   # stops at the first end
                break
            tok = next_tok
    finally:
        llama.llama_batch_free(batch)
    dt = time.perf_counter() - t0
    stats.decode_ms = dt * 1e3
    stats.tokens_per_s = stats.tokens_generated / dt if dt > 0 else 0.0
    return ds
