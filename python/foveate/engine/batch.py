"""Several pages in one context: continuous batching for `Reader.read_many`.

Each page is a sequence of its own (seq id = its slot), with its own sampler, positions,
fixation selection and merge. Every step decodes one token of every page in flight in one
llama_decode. Policy for newcomers: when a slot frees up, the next page is encoded and
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

from ..errors import ContextError, DecodeError, FoveateError
from ..inputs.images import load_page
from ..native import bindings as B
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
    batch = llama.llama_batch_init(parallel, 0, 1)
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
                  utf8=codecs.getincrementaldecoder("utf-8")(errors="replace"))
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
            batch.n_tokens = len(live)
            for row, q in enumerate(live):
                s = slots[q]
                batch.token[row] = s.token
                batch.pos[row] = s.n_past
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = q
                batch.logits[row] = True
            t = time.perf_counter()
            if llama.llama_decode(eng._ctx, batch) != 0:
                raise DecodeError(f"batched llama_decode failed ({len(live)} pages in flight)")
            dt = time.perf_counter() - t
            for row, q in enumerate(live):
                s = slots[q]
                s.t_decode += dt
                s.n_past += 1
                s.n_cells += 1
                _sample(eng, s, row)
    finally:
        for s in slots.values():
            llama.llama_sampler_free(s.sampler)
        llama.llama_batch_free(batch)


def _sample(eng, s: _Slot, row: int) -> None:
    tok = llama.llama_sampler_sample(s.sampler, eng._ctx, row)
    if eng.is_stop(tok):
        s.stats.stop_reason, s.done = "eos", True
        return
    piece = eng._piece(tok)
    looping = s.out.add(tok, piece)
    s.stats.tokens_generated += 1
    if s.on_token is not None and s.on_token(s.utf8.decode(piece)):
        s.stats.stop_reason, s.done = "cancelled", True
        return
    if looping:
        s.stats.stop_reason, s.done = "repetition", True
        return
    if s.stats.tokens_generated >= s.max_tokens:
        s.done = True          # stop_reason stays "max_tokens"
        return
    s.token = tok


def _finish(eng, s: _Slot, Result):
    llama.llama_sampler_free(s.sampler)
    s.sampler = None
    st = s.stats
    st.decode_ms = s.t_decode * 1e3
    st.tokens_per_s = st.tokens_generated / s.t_decode if s.t_decode > 0 else 0.0
    eng._fixation_stats(st)   # means over every page decoded so far in this batch
    text = s.out.out.decode("utf-8", errors="replace")
    notes = page_warnings(eng.model_name, s.page.width, s.page.height, text)
    notes += cutoff_warnings(st, s.max_tokens, eng.n_ctx)
    return Result(text=text, stats=st, image=s.page.name, warnings=notes,
                  image_size=(s.page.width, s.page.height), wall_s=time.perf_counter() - s.t0)
