"""Several pages in one context: continuous batching for `Reader.read_many`.

Each page is a sequence of its own (seq id = its slot), with its own sampler, positions,
fixation selection, merge and draft. Every step decodes one token of every page in flight in
one llama_decode, plus the tokens each drafting page's draft proposes to follow it (verified
as for one page: engine/drafts.py). Policy for newcomers: when a slot frees up, the next page is encoded and
prefilled before the next step, at most one newcomer per step, so the pages in flight wait
for at most one page's prefill between two of their tokens (chunking the prefill would
shorten that wait further; with one page's prefill at tens of milliseconds on the bundled
reader it is not needed yet).

KV memory: the context is unified (every sequence draws on the same cells), so a sequence's
share is checked by foveate: n_ctx // parallel cells per page (prompt, image and max_tokens),
refused with a ContextError before anything runs when the first page does not fit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import ContextError, DecodeError, FoveateError
from ..inputs.images import load_page
from ..native import bindings as B
from .drafts import (DraftMatcher, DraftStats, as_draft, fill_rows, record_drafts, step_rows,
                     tokenize_draft, verdict)
from .notes import cutoff_warnings, page_warnings
from .repetition import GuardedOutput

llama = B.llama


@dataclass
class PageJob:
    """A page with its own settings (a server request): what read_many's defaults do not say.
    on_token(text) streams its tokens; a true return value stops it ("cancelled")."""
    image: object
    prompt: str | None = None
    max_tokens: int | None = None
    sampling: object = None
    on_token: object = None
    draft: object = None    # the page's draft (str or inputs.draft_sources.DraftText; engine/drafts.py)


class _IterFeed:
    """A plain iterable as a feed: poll() gives the next (index, item) or raises StopIteration."""

    def __init__(self, items):
        self.it = enumerate(items)

    def poll(self, idle: bool):
        return next(self.it)


@dataclass
class _Slot:
    index: int              # the page's place in the input
    page: object
    stats: object
    sampler: object
    n_past: int
    n_cells: int
    max_tokens: int
    t0: float
    t_decode: float = 0.0
    token: int = -1         # sampled, to be fed at the next step
    out: object = None      # repetition.GuardedOutput
    done: bool = False
    on_token: object = None
    utf8: object = None
    tokens: list = None     # the page's tokens so far (drafts look their continuation up)
    draft: object = None    # inputs.draft_sources.DraftText, verified by `matcher`
    matcher: object = None  # engine/drafts.DraftMatcher (None: plain steps)
    drafts: object = None   # engine/drafts.DraftStats
    proposal: list = None   # this step's proposed tokens (rows after s.token)
    row: int = 0            # this step's first row in the batch
    note: str = ""          # why the page's draft was not used
    greedy: bool = False    # argmax, not the sampler chain (Sampling.greedy)


def read_many(eng, images, prompt, max_tokens: int, sampling, parallel: int):
    """Yields (index, Result or exception) as pages finish: a page that cannot start (bad
    input: its FoveateError; anything else its preparation raised, a bug: that exception) is
    that page's result, and the other pages go on. images: an iterable of pages
    (or PageJob), pulled lazily as slots free up; or a feed, an object whose poll(idle) gives
    the next (index, page or PageJob), None for "nothing now" (idle: no page is in flight, so
    it may wait), or raises StopIteration when there will be no more (a server's queue)."""
    import codecs

    from .core import Result

    if parallel < 1 or parallel > eng.n_seq:
        raise ValueError(f"parallel must be in [1, {eng.n_seq}] (the Reader's parallel=), got {parallel}")
    share = eng.n_ctx // parallel
    feed = images if hasattr(images, "poll") else _IterFeed(images)
    exhausted = False
    slots: dict[int, _Slot] = {}
    B.fixation.llama_fixation_reset_stats(eng._ctx)
    # a drafting page feeds up to max_rows rows a step; all rows of a step are one ubatch
    # (fixation's rows of a sequence are read back per ubatch)
    max_rows = step_rows(eng)
    row_cap = llama.llama_n_ubatch(eng._ctx)
    batch = llama.llama_batch_init(min(row_cap, parallel * max_rows), 0, 1)
    llama.llama_memory_clear(llama.llama_get_memory(eng._ctx), True)

    def start(seq: int, index: int, image):
        t0 = time.perf_counter()
        job = image if isinstance(image, PageJob) else PageJob(image)
        image, limit = job.image, job.max_tokens or max_tokens
        if isinstance(image, FoveateError):   # the caller could not produce this page
            raise image
        page = load_page(image, eng.image_max_pixels)
        try:
            n_past, stats = eng.prefill_page(page, prompt if job.prompt is None else job.prompt,
                                             seq_id=seq, clear=False)
        except BaseException:
            # what a failed prefill left in this sequence's cells must not reach the next page
            llama.llama_memory_seq_rm(llama.llama_get_memory(eng._ctx), seq, -1, -1)
            raise
        if stats.prompt_tokens + limit > share:
            llama.llama_memory_seq_rm(llama.llama_get_memory(eng._ctx), seq, -1, -1)
            raise ContextError(f"image {page.name}: {stats.prompt_tokens} prompt and image tokens "
                               f"+ max_tokens {limit} exceed this page's share of the "
                               f"context (n_ctx {eng.n_ctx} / {parallel} pages = {share}): "
                               f"raise n_ctx (-c) or lower max_tokens (-n)")
        smp = job.sampling or sampling
        s = _Slot(index, page, stats, eng._sampler(smp), n_past, stats.prompt_tokens, limit, t0,
                  out=GuardedOutput(smp.repetition_guard), on_token=job.on_token,
                  utf8=codecs.getincrementaldecoder("utf-8")(errors="replace"), tokens=[],
                  greedy=smp.greedy)
        if job.draft is not None:
            s.draft = as_draft(job.draft)
            s.note = eng._draft_refused(smp, False) or ""
            if not s.note:
                s.matcher, s.drafts = DraftMatcher(tokenize_draft(eng, s.draft.text)), DraftStats()
        s.stats.stop_reason = "max_tokens"
        _sample(eng, s, -1)   # the first token comes from the prefill's last row
        return s

    try:
        while not exhausted or slots:
            # at most one newcomer per step (see the module docstring)
            free = [q for q in range(parallel) if q not in slots]
            item = None
            if free and not exhausted:
                try:
                    item = feed.poll(not slots)
                except StopIteration:
                    exhausted = True
            if item is not None:
                index, image = item
                try:
                    slots[free[0]] = start(free[0], index, image)
                except Exception as e:   # noqa: BLE001 - this page's failure, not the batch's
                    yield index, e
                    continue
            if not slots:
                continue
            ready = [q for q, s in slots.items() if s.done]
            for q in ready:
                s = slots.pop(q)
                yield s.index, _finish(eng, s, Result)
                llama.llama_memory_seq_rm(llama.llama_get_memory(eng._ctx), q, -1, -1)
            live = sorted(q for q, s in slots.items() if not s.done)
            if not live:
                continue
            # each page's next token, then what its draft proposes to follow it
            spare = row_cap - len(live)
            n = 0
            for q in live:
                s = slots[q]
                s.proposal = []
                if s.matcher is not None and spare > 0:
                    room = min(s.max_tokens - s.stats.tokens_generated, max_rows - 1, spare)
                    s.proposal = s.matcher.propose(s.tokens)[0][:max(0, room)]
                    spare -= len(s.proposal)
                s.row = n
                n = fill_rows(batch, [s.token] + s.proposal, s.n_past, q, n)
            t = time.perf_counter()
            if llama.llama_decode(eng._ctx, batch) != 0:
                raise DecodeError(f"batched llama_decode failed ({len(live)} pages in flight, "
                                  f"{n} rows)")
            dt = time.perf_counter() - t
            for q in live:
                s = slots[q]
                s.t_decode += dt
                if s.matcher is None:
                    s.n_past += 1
                    s.n_cells += 1
                    _sample(eng, s, s.row)
                else:
                    _verify(eng, s, q)
    finally:
        for s in slots.values():
            llama.llama_sampler_free(s.sampler)
        llama.llama_batch_free(batch)


def _sample(eng, s: _Slot, row: int) -> None:
    if s.greedy:   # what the greedy sampler picks (sampling.Sampling.greedy), as drafts do
        _take(eng, s, int(np.argmax(eng.logits(row))))
    else:
        _take(eng, s, llama.llama_sampler_sample(s.sampler, eng._ctx, row))


def _verify(eng, s: _Slot, seq: int) -> None:
    """A drafting page after its rows ran (engine/drafts.py: the same rule as one page)."""
    agreed, accepted, next_tok = verdict(eng, s.proposal, s.row, seq)
    s.drafts.count(s.matcher, s.proposal, agreed, accepted, s.matcher.last_source)
    if accepted < len(s.proposal):   # the rejected rows' cells go
        llama.llama_memory_seq_rm(llama.llama_get_memory(eng._ctx), seq,
                                  s.n_past + 1 + accepted, -1)
    s.n_past += 1 + accepted
    s.n_cells += 1 + accepted
    for tok in s.proposal[:accepted]:
        if not _take(eng, s, tok):
            return
    _take(eng, s, next_tok)


def _take(eng, s: _Slot, tok: int) -> bool:
    """One token of the page; False when it ended the page."""
    if eng.is_stop(tok):
        s.stats.stop_reason, s.done = "eos", True
        return False
    piece = eng._piece(tok)
    looping = s.out.add(tok, piece)
    s.stats.tokens_generated += 1
    s.tokens.append(tok)
    if s.on_token is not None and s.on_token(s.utf8.decode(piece)):
        s.stats.stop_reason, s.done = "cancelled", True
        return False
    if looping:
        s.stats.stop_reason, s.done = "repetition", True
        return False
    if s.stats.tokens_generated >= s.max_tokens:
        s.done = True          # stop_reason stays "max_tokens"
        return False
    s.token = tok
    return True


def _finish(eng, s: _Slot, Result):
    llama.llama_sampler_free(s.sampler)
    s.sampler = None
    st = s.stats
    st.decode_ms = s.t_decode * 1e3
    st.tokens_per_s = st.tokens_generated / s.t_decode if s.t_decode > 0 else 0.0
    eng._fixation_stats(st)   # means over every page decoded so far in this batch
    if s.drafts is not None:
        record_drafts(st, s.drafts, s.draft)
    text = s.out.out.decode("utf-8", errors="replace")
    notes = page_warnings(eng.model_name, s.page.width, s.page.height, text)
    if s.note:
        notes.append(f"the draft was not used: {s.note}")
    if getattr(s.draft, "note", ""):
        notes.append(s.draft.note)
    notes += cutoff_warnings(st, s.max_tokens, eng.n_ctx)
    return Result(text=text, stats=st, image=s.page.name, warnings=notes,
                  image_size=(s.page.width, s.page.height), wall_s=time.perf_counter() - s.t0)
