"""High-level API: `Reader(model, mmproj).read(image) -> Result`."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ...engine.core import FIXATION_SAMPLE, Engine, Result, Sampling
from ...inputs.draft_sources import DraftText


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
                 merge_positions: str = "original", merge_score: str = "auto",
                 image_min_tokens: int | None = None, image_max_tokens: int | None = None,
                 parallel: int = 1, preset: str | None = "auto", cache_type_k: str = "f16",
                 cache_type_v: str = "f16", vision_bf16: bool = True):
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
        norm drops characters first, see docs/benchmarks.md).
        image_min_tokens / image_max_tokens: bounds on a page's visual tokens, as llama.cpp's
        --image-min-tokens / --image-max-tokens (None: the projector's own); they also size
        rendered PDF pages.
        parallel: read_many decodes up to this many pages together (one context, n_ctx
        shared: each page gets n_ctx // parallel cells).
        preset: the prompt a read without one uses (engine/presets.py, each named with its
        published source): "auto" = the model family's default (`foveate models` lists them),
        a preset name, or "none" (foveate's own prompt). An explicit prompt always wins.
        cache_type_k / cache_type_v: the KV cache's types, as llama.cpp's -ctk / -ctv ("f16",
        "q8_0", ...); with the cache on a GPU, a quantized type turns fixation off
        (Result.stats.fixation_off says so): its CUDA kernels read F16/F32 K/V.
        vision_bf16: the vision encoder's F16 matmul weights as BF16 on a CPU that multiplies
        BF16 natively (AVX512_BF16): ~2x faster encode, activations rounded to BF16 (True:
        wherever supported; False: stock F16 numbers; docs/benchmarks.md)."""
        self._check_own(parallel, preset)
        # Every llama.cpp call runs on this Reader's one engine thread, whichever thread asks:
        # ggml's CPU backend keeps an OpenMP team per calling thread, and a team left spinning
        # by one thread slows the next one's steps (4 pages on 2 cores: 0.85 s from one thread,
        # 6.7 s when calls alternate between two; docs/benchmarks.md).
        self._engine_pool = ThreadPoolExecutor(1, thread_name_prefix="foveate-engine")
        self._engine_thread = self._engine_pool.submit(threading.current_thread).result()
        self.engine = self._on_engine(Engine, model, mmproj, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx,
                             threads=threads, n_batch=n_batch, flash_attn=flash_attn,
                             fixation=fixation, fixation_k_min=fixation_k_min,
                             focal_layers=focal_layers, fixation_dilation=fixation_dilation,
                             fixation_refresh=fixation_refresh,
                             fixation_sample=fixation_sample, merge=merge,
                             merge_positions=merge_positions, merge_score=merge_score,
                             image_min_tokens=image_min_tokens, image_max_tokens=image_max_tokens,
                             n_seq=parallel, kv_unified=parallel > 1,
                             cache_type_k=cache_type_k, cache_type_v=cache_type_v,
                             vision_bf16=vision_bf16)
        self.parallel = parallel
        from ...engine.families import pick_preset
        self.preset = pick_preset(self.engine.family, self.engine.model_name, preset)
        # the lock: one page (or read_many) at a time; the engine thread runs them
        self._lock = threading.RLock()
        self._in_batch = False

    @staticmethod
    def _check_own(parallel, preset) -> None:
        if isinstance(parallel, bool) or not isinstance(parallel, (int, float)) \
                or int(parallel) != parallel or parallel < 1:
            raise ValueError(f"parallel must be an integer >= 1, got {parallel!r}")
        if preset not in (None, "auto", "none"):
            from ...engine.presets import preset as named_preset
            named_preset(preset)   # an unknown name fails before anything loads

    @classmethod
    def check_settings(cls, model, mmproj, *, parallel: int = 1, preset: str | None = "auto",
                       n_gpu_layers: int = 0, threads: int | None = None,
                       flash_attn: bool | None = None, **engine_settings):
        """What Reader(model, mmproj, **settings) would refuse before loading, refused without
        loading anything (the files' headers are read): for a caller that loads elsewhere,
        such as `read --ray`, whose workers each load the model. Returns what the headers
        said (engine.settings.Checked; `.family`: the model's family, as Engine.family)."""
        import inspect

        from ...engine.core import check_settings
        known = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(engine_settings) - set(known))
        if unknown:   # as Reader(...) would refuse them
            raise TypeError(f"Reader got an unexpected keyword argument {unknown[0]!r}")
        if mmproj is None:
            raise ValueError("a Reader needs the model's image projector (mmproj)")
        cls._check_own(parallel, preset)
        return check_settings(model, mmproj, **engine_settings)

    def _prompt(self, prompt: str | None) -> str | None:
        """The prompt a read uses: the caller's, else the preset's (None: foveate's)."""
        if prompt is not None:
            return prompt
        return self.preset.prompt if self.preset is not None else None

    def _on_engine(self, fn, *args, **kwargs):
        """Run fn on the engine thread (directly when already there) and return its result."""
        if threading.current_thread() is getattr(self, "_engine_thread", None):
            return fn(*args, **kwargs)
        return self._engine_pool.submit(fn, *args, **kwargs).result()

    def read(self, image, prompt: str | None = None, max_tokens: int = 1024, *,
             temperature: float = 0.0, top_k: int = 40, top_p: float = 0.95,
             min_p: float = 0.05, repeat_penalty: float = 1.0, seed: int = 0xF0FEA7E,
             repetition_guard: bool = True, trace: bool = False, on_token=None,
             draft=None) -> Result:
        """Transcribe one page: a path, bytes or a PIL image. Greedy unless temperature > 0.
        draft: the page's text as another reader read it (a text layer, an OCR engine, your
        own; a str, or an inputs.draft_sources.DraftText naming its source), or "" for the
        output's own repeats only: greedy decoding verifies several
        drafted tokens per step and keeps exactly the tokens it picks alone (README, "Drafts";
        stats.draft_*). With sampling, a repeat penalty, fixation or a trace the page is read
        without it and Result.warnings says why.
        trace=True (fixation on): Result.trace holds, per decode step, the image tokens the
        focal layers selected, mapped to the page (engine.trace.Trace; draw it with
        foveate.surface.trace_picture.save(result.trace, "out.gif")).
        repetition_guard: stop when the output starts looping (engine/repetition.py; the
        repeats are cut and stats.stop_reason is "repetition"); False lets it run."""
        s = _sampling(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                      repeat_penalty=repeat_penalty, seed=seed, repetition_guard=repetition_guard)
        with self._lock:   # one llama context: one page at a time, whichever thread asks
            if self._in_batch:
                raise RuntimeError("this Reader is inside read_many (its pages share the "
                                   "context): finish or close that iterator first")
            if draft is not None and not isinstance(draft, (str, DraftText)):
                raise ValueError(f"draft must be text (str), got {type(draft).__name__}")
            return self._on_engine(self.engine.read, image, prompt=self._prompt(prompt),
                                   max_tokens=max_tokens, sampling=s, trace=trace,
                                   on_token=on_token, draft=draft)

    def read_document(self, source, pages=None, prompt: str | None = None,
                      max_tokens: int = 1024, *, password: str | None = None,
                      dpi: float | None = None, skip=(), draft=None, **sampling):
        """Read a document page by page: yields one Result per page, in order, with
        `.source`, `.page` (1-based) and `.n_pages` set. source: a path (image, multi-page
        TIFF, PDF), "-" (stdin), bytes, a PIL image, or an open inputs.documents.Document
        (left open for the caller). pages: page numbers, or a string like
        "1-3,7,10-" (None: all). PDF pages render at a scan's own resolution, else at `dpi`,
        else at the size that fits the image-token budget (image_max_tokens, or what n_ctx
        leaves). skip: page numbers not to read (resume). draft: where each page's draft
        comes from: "auto", "pdf", "ocr", "self", "none"/None (inputs/draft_sources.py), or a
        DraftText used for every page (a document's whole text works). Other keyword
        arguments as read()."""
        from ...inputs.documents import Document, open_document, parse_pages
        from ...inputs.draft_sources import check_mode, page_draft

        if isinstance(draft, str):
            check_mode(draft)   # before the document opens: a missing OCR engine is one line

        owned = not isinstance(source, Document)
        doc = open_document(source, password=password) if owned else source
        try:
            numbers = (parse_pages(pages, doc.n_pages, doc.name)
                       if pages is None or isinstance(pages, str) else list(pages))
            bad = [p for p in numbers if not 1 <= p <= doc.n_pages]
            if bad:
                from ...errors import DocumentError
                raise DocumentError(f"{doc.name}: no page {bad[0]} (it has {doc.n_pages})")
            budget = self.render_budget(max_tokens, dpi)
            for number in numbers:
                if number in skip:
                    continue
                image = doc.page(number, budget)
                res = self.read(image, prompt=prompt, max_tokens=max_tokens,
                                draft=page_draft(draft, doc, number, image), **sampling)
                res.source, res.page, res.n_pages = doc.name, number, doc.n_pages
                res.image = f"{doc.name}#page={number}" if doc.n_pages > 1 else doc.name
                yield res
        finally:
            if owned:
                doc.close()

    def render_budget(self, max_tokens: int, dpi: float | None = None):
        """How large a PDF page may render: the image-token budget in pixels (and --dpi)."""
        from ...inputs.documents import RenderBudget

        eng, ppt = self.engine, self.engine.pixels_per_token
        tokens = eng.image_token_budget(max_tokens, eng.n_ctx // max(1, self.parallel))
        return RenderBudget(max_pixels=tokens * ppt, min_pixels=(eng.image_min_tokens or 0) * ppt,
                            dpi=dpi)

    def read_many(self, images, prompt: str | None = None, max_tokens: int = 1024, *,
                  parallel: int | None = None, in_order: bool = True, **sampling):
        """Read many pages, up to `parallel` (default: the Reader's) decoding together, each
        its own sequence (own sampler, fixation selection, merge); when a page finishes the
        next one starts while the others go on (engine/batch.py has the policy). Yields a
        Result per page, in input order (in_order) or as they finish; a page that fails yields
        its exception in its place (its own error, not the run's): a FoveateError for bad
        input, anything else (a bug) as it was raised. Greedy decoding with
        fixation off gives each page the text it gets alone."""
        from ...engine.batch import read_many

        s = _sampling(**sampling)   # as read(): temperature ... seed, repetition_guard
        n = parallel or self.parallel
        done, nxt = {}, 0
        end = object()
        with self._lock:   # held until the iterator ends or is closed: other threads wait
            self._in_batch = True
            batch = read_many(self.engine, images, self._prompt(prompt), max_tokens, s, n)
            try:
                while True:   # each step of the batch on the engine thread
                    step = self._on_engine(next, batch, end)
                    if step is end:
                        break
                    index, res = step
                    if not in_order:
                        yield res
                        continue
                    done[index] = res
                    while nxt in done:
                        yield done.pop(nxt)
                        nxt += 1
            finally:
                self._on_engine(batch.close)
                self._in_batch = False

    def close(self) -> None:
        with self._lock:
            self._on_engine(self.engine.close)
        self._engine_pool.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sampling(repetition_guard: bool = True, **knobs) -> Sampling:
    from ...engine.repetition import RepetitionGuard

    return Sampling(repetition_guard=RepetitionGuard() if repetition_guard else None, **knobs)
