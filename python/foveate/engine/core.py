"""Engine layer: one language model + its image projector; image in, text out.

Drives llama.cpp and mtmd through llama-cpp-python's ctypes bindings, the same
path llama-mtmd-cli takes: tokenize the chat prompt with the image marker, run
the projector (encode), decode the image embeddings and text (prefill), then
sample token by token (decode). Each phase is timed for Result.stats.

The Engine is one class around one llama context (~470 lines): what it does not need its
state for lives beside it (settings.py, sampling.py, result.py, prompt.py, batch.py).
"""
from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import time

import numpy as np

from ..native import bindings as B
from . import controls as C
from .controls import FIXATION_SAMPLE
from ..errors import ContextError, DecodeError, ModelError, ProjectorError
from ..inputs.images import MAX_PIXELS, Page, load_page
from .notes import cutoff_warnings, page_warnings
from .families import check_method, merge_auto_floor
from .prompt import format_prompt
from .repetition import GuardedOutput
# Sampling, Stats, Result and check_settings are the engine's public names: imported from
# here by the API, the instruments and the tests
from .result import Result, Stats
from .sampling import Sampling, sampler_chain
from .settings import Checked, check_settings, merges, threads_or_all
from .trace import GRID_PROJECTORS, Trace, TraceStep, TraceUnavailable

__all__ = ["DEFAULT_PROMPT", "FIXATION_SAMPLE", "Checked", "Engine", "Result", "Sampling",
           "Stats", "check_settings"]


llama, mtmd = B.llama, B.mtmd

DEFAULT_PROMPT = "Read the text in the image."


class Engine:
    def __init__(self, model: str | os.PathLike, mmproj: str | os.PathLike | None, *,
                 n_gpu_layers: int = 0, n_ctx: int = 4096, n_batch: int = 2048,
                 threads: int | None = None, flash_attn: bool | None = None,
                 image_max_pixels: int = MAX_PIXELS, fixation: float | None = None,
                 fixation_k_min: int = 16, focal_layers: list[int] | None = None,
                 fixation_max_tokens: int = 8, fixation_dilation: int = 0,
                 fixation_refresh: int = 1, fixation_sample: int = FIXATION_SAMPLE, n_seq: int = 1,
                 kv_unified: bool = False, merge=None, merge_positions: str = "original",
                 merge_score: str = "auto", image_min_tokens: int | None = None,
                 image_max_tokens: int | None = None, cache_type_k: str = "f16",
                 cache_type_v: str = "f16", vision_bf16: bool = True):
        self.model_path = str(model)
        self.vision_bf16 = vision_bf16
        self.mmproj_path = str(mmproj) if mmproj is not None else None
        self.image_max_pixels = image_max_pixels
        self._model = self._ctx = self._mtmd = None   # close() / __del__ after a refusal
        pre = check_settings(model, mmproj, n_ctx=n_ctx, n_batch=n_batch, fixation=fixation,
                             fixation_k_min=fixation_k_min, focal_layers=focal_layers,
                             fixation_max_tokens=fixation_max_tokens,
                             fixation_dilation=fixation_dilation,
                             fixation_refresh=fixation_refresh, fixation_sample=fixation_sample,
                             merge=merge, merge_positions=merge_positions,
                             merge_score=merge_score, image_min_tokens=image_min_tokens,
                             image_max_tokens=image_max_tokens, cache_type_k=cache_type_k,
                             cache_type_v=cache_type_v, vision_bf16=vision_bf16)
        self.image_min_tokens, self.image_max_tokens = image_min_tokens, image_max_tokens
        type_k, type_v = pre.type_k, pre.type_v
        self.model_name = pre.model_name
        self.projector_type = pre.projector_type
        if mmproj is not None:
            self.patch_size = pre.patch_size
        merge_score = pre.merge_score
        self.family = pre.family
        self.image_batch_hook = None   # tests: called with each decoded image sub-batch
        self.threads = threads_or_all(threads)

        mark = B.log.mark()
        mp = llama.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        self._model = llama.llama_model_load_from_file(self.model_path.encode(), mp)
        if not self._model:
            raise ModelError(f"llama.cpp could not load model {model}: "
                             f"{B.log.cause_since(mark)}")
        self._vocab = llama.llama_model_get_vocab(self._model)
        # recurrent or hybrid: the sequence state cannot be cut back to an earlier position
        self.recurrent = bool(llama.llama_model_is_recurrent(self._model)
                              or llama.llama_model_is_hybrid(self._model))
        self.n_vocab = llama.llama_vocab_n_tokens(self._vocab)
        self.stop_tokens = self._special_tokens(self.family.family.stop_tokens
                                                if self.family.family else ())

        cp = llama.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = min(n_batch, 512)
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.no_perf = True
        cp.n_seq_max = max(1, n_seq)   # >1: several pages decode in one batch (seq ids)
        self.n_seq = cp.n_seq_max
        cp.kv_unified = kv_unified
        cp.type_k, cp.type_v = type_k, type_v
        if flash_attn is None and fixation:
            flash_attn = True  # fixation's sparse kernel reads K/V rows: the FA cache layout
        if flash_attn is not None:
            cp.flash_attn_type = (llama.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        mark = B.log.mark()
        self._ctx = llama.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise ModelError(f"llama.cpp could not create a context for {model} "
                             f"(n_ctx={n_ctx}): {B.log.cause_since(mark)}")
        self.n_ctx = llama.llama_n_ctx(self._ctx)
        # llama.cpp rounds n_ctx up (to its padding, at least 256): messages say which was asked
        self.n_ctx_asked = n_ctx
        self.n_batch = llama.llama_n_batch(self._ctx)

        self.fixation = 0.0
        self.set_fixation(fixation or 0.0, fixation_k_min, focal_layers, fixation_max_tokens,
                          fixation_dilation, fixation_refresh, fixation_sample)

        self._batch = llama.llama_batch_init(1, 0, 1)
        self._template = llama.llama_model_chat_template(self._model, None)
        self.marker = mtmd.mtmd_default_marker().decode()
        self.merge = "off"
        self._page_kept, self._page_merged, self._page_img = [], False, 0   # merge_kept()
        self.merge_positions = "original"
        self.merge_score = merge_score   # text-only engines: what the bench's synthetic merge uses
        if mmproj is not None:
            self._n_gpu_layers = n_gpu_layers
            self._init_projector(n_gpu_layers)
            self.set_merge(merge, merge_positions, merge_score)
        elif merge not in (None, "off", 0):
            raise ValueError("token merging needs a projector (mmproj)")

    def set_merge(self, merge, positions: str | None = None, score: str | None = None) -> None:
        """Prefill token merging (RTPrune): None/"off", "auto" (ratio per page) or a keep
        ratio in (0, 1]. positions ("original" / "consecutive", None = unchanged): where a
        1-D RoPE model decodes the kept rows (M-RoPE models always keep original ones).
        score ("auto" / "norm" / "duplicates", None = unchanged): which rows a keep ratio
        keeps; "auto" = "norm" on DeepSeek-OCR's projector, "duplicates" on others."""
        check_method(self.family, False, merges(merge))
        self.merge, positions, score = C.apply_merge(self._mtmd, self.projector_type, merge,
                                                     positions, score)
        if B.merge.mtmd_merge_set_auto_floor(self._mtmd, merge_auto_floor(self.family)) != 0:
            raise ValueError("mtmd_merge_set_auto_floor rejected the family's floor")
        if positions is not None:
            self.merge_positions = positions
        if score is not None:
            self.merge_score = score

    def merge_kept(self) -> list[int]:
        """Original image-token ids of the last page kept by merging (ascending, counted over
        all its image chunks, in page order); [] if none merged."""
        return list(self._page_kept) if self._page_merged else []

    def _merge_stats(self, stats: "Stats", n_before: int) -> None:
        last = C.merge_last(self._mtmd)
        if last is None:
            stats.image_tokens_merged += n_before
            return
        stats.image_tokens_merged += last.tokens_after
        stats.prompt_tokens -= last.tokens_before - last.tokens_after   # cells the merged-away rows no longer take
        stats.merge_ratio = last.ratio
        stats.merge_ms += last.merge_ms

    def set_fixation(self, ratio: float, k_min: int = 16, focal_layers=None,
                     max_tokens: int = 8, dilation: int = 0, refresh: int = 1,
                     sample: int = FIXATION_SAMPLE) -> None:
        """Decode-time visual KV selection: attend to `ratio` of the image tokens per step
        (0 = off). `focal_layers` None / "auto": the layer `foveate calibrate` chose for this
        model file, else one layer at a third of the depth. `sample`: that many fixed image
        tokens (spread over the page) also attend, each standing for its share of the hidden
        ones (compensation; 0 = off)."""
        check_method(self.family, bool(ratio), False)
        self.fixation_max_tokens = max_tokens   # rows per sequence a sparse ubatch takes
        self.fixation = C.apply_fixation(self._ctx, self._model, self.model_path, ratio, k_min,
                                         focal_layers, max_tokens, dilation, refresh, sample)

    def logits(self, i: int = -1):
        """Logits of row i of the last decoded batch, as a numpy view of llama.cpp's buffer
        (valid until the next decode: copy it to keep it)."""
        import numpy as np

        return np.ctypeslib.as_array(llama.llama_get_logits_ith(self._ctx, i),
                                     shape=(self.n_vocab,))

    def fixation_selection(self, seq_id: int = 0) -> list[int]:
        """Image-token indices (row-major on the page grid) attended at the last step."""
        return C.fixation_selection(self._ctx, seq_id)

    def _fixation_stats(self, stats: "Stats") -> None:
        fs = C.fixation_stats(self._ctx)
        stats.fixation_ratio = self.fixation
        dense = float(stats.image_tokens)
        stats.visual_tokens_selected = fs.selected if fs.rows else dense
        stats.visual_tokens_attended = fs.attended if fs.rows else dense
        stats.focal_layers = fs.focal_layers if self.fixation else []
        stats.fixation_off = (B.fixation.llama_fixation_get_off_reason(self._ctx).decode()
                              if self.fixation else "")

    def profile_projector(self, profile) -> None:
        """Reopen the projector with every node of its graph timed into `profile` (a
        libfoveate foveate_profile pointer; None: reopen it plain). For instruments: the graph
        then runs a node at a time, so the encode as a whole is slower than it is unprofiled.
        The merge setting is cleared (set it again)."""
        mtmd.mtmd_free(self._mtmd)
        self._mtmd = None
        self._init_projector(self._n_gpu_layers, profile)

    def _init_projector(self, n_gpu_layers: int, profile=None) -> None:
        model, mmproj = self.model_path, self.mmproj_path
        mparams = mtmd.mtmd_context_params_default()
        if profile is not None:
            self._profile_cb = B.profile_eval_callback()   # kept alive with the context
            mparams.cb_eval = self._profile_cb
            mparams.cb_eval_user_data = profile
        mparams.use_gpu = n_gpu_layers != 0
        mparams.n_threads = self.threads
        mparams.print_timings = False
        mparams.warmup = False
        if self.image_min_tokens:   # as llama.cpp's --image-min-tokens / --image-max-tokens
            mparams.image_min_tokens = int(self.image_min_tokens)
        if self.image_max_tokens:
            mparams.image_max_tokens = int(self.image_max_tokens)
        mark = B.log.mark()
        self._mtmd = mtmd.mtmd_init_from_file(self.mmproj_path.encode(), self._model, mparams)
        if not self._mtmd:
            raise ProjectorError(f"projector {mmproj} cannot be used with model {model}: "
                                 f"{B.log.cause_since(mark)}")
        if not mtmd.mtmd_support_vision(self._mtmd):
            raise ProjectorError(f"projector has no vision encoder: {mmproj}")
        # the projector's F16 matmul weights as BF16 where the CPU multiplies BF16 natively
        # (native/mtmd/clip-weights.cpp; True: wherever it is supported; False: stock)
        self.vision_weights_bf16 = (self.vision_bf16 and
                                    B.merge.mtmd_foveate_weights_bf16_supported(self._mtmd) == 1)
        if self.vision_weights_bf16:
            B.merge.mtmd_foveate_set_weights_bf16(self._mtmd, 1)

    @property
    def pixels_per_token(self) -> int:
        """Image pixels per visual token, to size a rendered page: (patch x merge)^2. Qwen-style
        mergers fold 2x2 patches into a token; other projectors are taken to do the same
        (an estimate: it only chooses a PDF page's render size, mtmd sizes the image itself)."""
        return (getattr(self, "patch_size", 14) * 2) ** 2

    def image_token_budget(self, max_tokens: int, cells: int | None = None) -> int:
        """Visual tokens a page may take: --image-max-tokens, else what its cells (default:
        n_ctx; a page's share when several decode together) leave after the prompt and
        `max_tokens` of text."""
        room = max(64, (self.n_ctx if cells is None else cells) - max_tokens - 128)
        return min(self.image_max_tokens, room) if self.image_max_tokens else room

    def _ctx_note(self) -> str:
        return (f" (-c {self.n_ctx_asked} raised to llama.cpp's {self.n_ctx})"
                if self.n_ctx_asked != self.n_ctx else "")

    # --- prompt and sampling ------------------------------------------------------------------
    def format_prompt(self, prompt: str) -> str:
        """The model's own chat template around one user turn: image marker + prompt."""
        return format_prompt(self, prompt)

    def _sampler(self, s: Sampling):
        return sampler_chain(s, self.n_vocab)

    def _special_tokens(self, texts) -> frozenset:
        """Ids of the texts that are one special token in this vocab (others are ignored)."""
        ids = set()
        for t in texts:
            raw = t.encode()
            out = (llama.llama_token * 8)()
            n = llama.llama_tokenize(self._vocab, raw, len(raw), out, 8, False, True)
            if n == 1:
                ids.add(int(out[0]))
        return frozenset(ids)

    def is_stop(self, token: int) -> bool:
        """End of generation: the vocab's EOG tokens and the family's end-of-turn tokens."""
        return bool(llama.llama_vocab_is_eog(self._vocab, token)) or token in self.stop_tokens

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _decode_one(self, token: int, pos: int) -> None:
        b = self._batch
        b.n_tokens = 1
        b.token[0] = token
        b.pos[0] = pos
        b.n_seq_id[0] = 1
        b.seq_id[0][0] = 0
        b.logits[0] = True
        if llama.llama_decode(self._ctx, b) != 0:
            raise DecodeError(f"llama_decode failed at position {pos}")

    # --- the page ----------------------------------------------------------------------------
    def read(self, image, prompt: str | None = None, max_tokens: int = 1024,
             sampling: Sampling | None = None, trace: bool = False, on_token=None,
             draft=None) -> Result:
        """trace: record where fixation looked at every step (Result.trace; needs fixation).
        on_token(text): called with each token's text as it is generated (streaming); a true
        return value stops the page there (stop_reason "cancelled": a client went away).
        draft: the page's text as someone else read it (a str, or inputs.draft_sources.DraftText
        naming its source; "" = only the output's own n-grams):
        greedy decoding verifies many drafted tokens per step and keeps exactly the tokens it
        would pick alone (engine/drafts.py), with fixation too. Needs greedy sampling without a
        repeat penalty and no trace; otherwise the page is read without it (a note says why)."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if trace and not self.fixation:
            raise ValueError("a trace shows fixation's selections: turn fixation on (--fixation 0.05)")
        t0 = time.perf_counter()
        page = image if isinstance(image, Page) else load_page(image, self.image_max_pixels)
        n_past, stats = self.prefill_page(page, prompt)
        tr = self._new_trace(page, stats) if trace else None
        s = sampling or Sampling()
        why_not = None if draft is None else self._draft_refused(s, trace)
        if draft is not None and why_not is None:
            out = self._generate_drafted(n_past, stats.prompt_tokens, max_tokens, s, stats,
                                         draft, on_token)
        else:
            out = self._generate(n_past, stats.prompt_tokens, max_tokens, s, stats, tr, on_token)
        notes = page_warnings(self.model_name, page.width, page.height, out)
        if why_not:
            notes.append(f"the draft was not used: {why_not}")
        if getattr(draft, "note", ""):
            notes.append(draft.note)
        notes += cutoff_warnings(stats, max_tokens, self.n_ctx)
        if stats.fixation_off:
            notes.append(f"fixation is off for this context: {stats.fixation_off}")
        return Result(text=out, stats=stats, image=page.name, warnings=notes,
                      image_size=(page.width, page.height), wall_s=time.perf_counter() - t0,
                      trace=tr)

    def _new_trace(self, page: Page, stats: "Stats") -> "Trace":
        nx, ny, n_chunks = self._last_grid
        if (self.projector_type not in GRID_PROJECTORS or n_chunks != 1
                or nx * ny != stats.image_tokens):
            raise TraceUnavailable(
                f"the trace cannot map {self.projector_type or 'this projector'}'s image tokens "
                f"to the page yet ({n_chunks} image chunks, {stats.image_tokens} tokens on a "
                f"{nx} x {ny} grid); it needs one grid of merged patches (Qwen-style projectors)")
        merged = stats.image_tokens_merged and stats.image_tokens_merged != stats.image_tokens
        return Trace(grid=(nx, ny), image_size=(page.width, page.height),
                     kept=self.merge_kept() if merged else None, ratio=self.fixation, page=page)

    @contextlib.contextmanager
    def _tokenized(self, page: Page, text: bytes):
        """mtmd's chunks of prompt text + page (freed on exit); DecodeError if mtmd refuses."""
        if not self._mtmd:
            raise ProjectorError("this engine was created without a projector (mmproj)")
        pixels = (ctypes.c_uint8 * len(page.rgb)).from_buffer_copy(page.rgb)
        bitmap = mtmd.mtmd_bitmap_init(page.width, page.height, pixels)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            inp = mtmd.mtmd_input_text(text=text, text_len=len(text),
                                       add_special=True, parse_special=True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            mark = B.log.mark()
            rc = mtmd.mtmd_tokenize(self._mtmd, chunks, ctypes.byref(inp), bitmaps, 1)
            if rc != 0:
                raise DecodeError(f"mtmd could not tokenize image {page.name} (code {rc}): "
                                  f"{B.log.cause_since(mark)}")
            yield chunks
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def image_token_count(self, page: Page) -> int:
        """The page's image tokens under this projector's rules: tokenized, not encoded."""
        with self._tokenized(page, self.format_prompt("").encode()) as chunks:
            chs = (mtmd.mtmd_input_chunks_get(chunks, i)
                   for i in range(mtmd.mtmd_input_chunks_size(chunks)))
            return sum(mtmd.mtmd_input_chunk_get_n_tokens(ch) for ch in chs
                       if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE)

    def image_embeddings(self, page: Page) -> "np.ndarray":
        """The projector's output rows for `page` (image tokens x the LLM's width, float32,
        after merging when it is on): what the language model is fed. Encodes only."""
        n_embd = llama.llama_model_n_embd_inp(self._model)
        rows = []
        with self._tokenized(page, self.format_prompt("").encode()) as chunks:
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                ch = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(ch) != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    continue
                mark = B.log.mark()
                if mtmd.mtmd_encode_chunk(self._mtmd, ch) != 0:
                    raise DecodeError(f"image encoder failed on {page.name}: "
                                      f"{B.log.cause_since(mark)}")
                n = mtmd.mtmd_input_chunk_get_n_tokens(ch)
                out = mtmd.mtmd_get_output_embd(self._mtmd)
                rows.append(np.ctypeslib.as_array(out, shape=(n * n_embd,)).reshape(n, n_embd).copy())
        return np.concatenate(rows) if rows else np.zeros((0, n_embd), np.float32)

    def prefill_page(self, page: Page, prompt: str | None = None, seq_id: int = 0,
                     clear: bool = True) -> tuple[int, Stats]:
        """Clear the context, then tokenize, encode and prefill prompt + page.

        Returns the next position (n_past) and the stats so far."""
        stats = Stats()
        text = self.format_prompt(DEFAULT_PROMPT if prompt is None else prompt).encode()
        with self._tokenized(page, text) as chunks:
            n_pos = mtmd.mtmd_helper_get_n_pos(chunks)
            self._last_grid = (0, 0, 0)   # (nx, ny, image chunks) of this page, for traces
            n_chunks = mtmd.mtmd_input_chunks_size(chunks)
            for i in range(n_chunks):
                ch = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    stats.image_tokens += mtmd.mtmd_input_chunk_get_n_tokens(ch)
                    it = mtmd.mtmd_input_chunk_get_tokens_image(ch)
                    nx, ny, k = self._last_grid
                    self._last_grid = (mtmd.mtmd_image_tokens_get_nx(it),
                                       mtmd.mtmd_image_tokens_get_ny(it), k + 1)
                stats.prompt_tokens += mtmd.mtmd_input_chunk_get_n_tokens(ch)
            if n_pos >= self.n_ctx or stats.prompt_tokens >= self.n_ctx:
                raise ContextError(
                    f"image {page.name} needs {stats.image_tokens} image tokens and the prompt "
                    f"{max(n_pos, stats.prompt_tokens)} positions in all, more than "
                    f"n_ctx={self.n_ctx}{self._ctx_note()}: raise n_ctx (-c)")
            mem = llama.llama_get_memory(self._ctx)
            if clear:
                llama.llama_memory_clear(mem, True)
            else:
                llama.llama_memory_seq_rm(mem, seq_id, -1, -1)
            n_past = self._prefill(chunks, n_chunks, page, stats, seq_id)
        return n_past, stats

    def _prefill(self, chunks, n_chunks: int, page: Page, stats: Stats, seq_id: int = 0) -> int:
        # the prompt runs dense: a short text chunk (a tiled page's markers between its image
        # chunks, a short prompt) fits under fixation's max_tokens but is not a decode step
        B.fixation.llama_fixation_hold(self._ctx, 1)
        try:
            return self._prefill_chunks(chunks, n_chunks, page, stats, seq_id)
        finally:
            B.fixation.llama_fixation_hold(self._ctx, 0)

    def _note_kept(self, chunk, n_img: int) -> None:
        """The page's kept ids: this chunk's kept rows (all, if it was not merged), offset by
        the image tokens of the page's earlier chunks."""
        kept = C.chunk_kept(chunk)
        self._page_merged |= kept is not None
        self._page_kept += [self._page_img + i for i in (range(n_img) if kept is None else kept)]
        self._page_img += n_img

    def _prefill_chunks(self, chunks, n_chunks: int, page: Page, stats: Stats,
                        seq_id: int = 0) -> int:
        self._page_kept, self._page_merged, self._page_img = [], False, 0
        n_past = 0
        new_n_past = llama.llama_pos(0)
        for i in range(n_chunks):
            ch = mtmd.mtmd_input_chunks_get(chunks, i)
            last = i == n_chunks - 1
            mark = B.log.mark()
            if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                n_img = mtmd.mtmd_input_chunk_get_n_tokens(ch)   # before merging
                t0 = time.perf_counter()
                if mtmd.mtmd_encode_chunk(self._mtmd, ch) != 0:
                    raise DecodeError(f"image encoder failed on {page.name}: "
                                      f"{B.log.cause_since(mark)}")
                embd = mtmd.mtmd_get_output_embd(self._mtmd)
                self._merge_stats(stats, n_img)
                t1 = time.perf_counter()
                hook = (mtmd.mtmd_helper_post_decode_callback(
                            lambda b, _u: self.image_batch_hook(b.contents) or 0)
                        if self.image_batch_hook else mtmd.mtmd_helper_post_decode_callback())
                rc = mtmd.mtmd_helper_decode_image_chunk(
                    self._mtmd, self._ctx, ch, embd, n_past, seq_id, self.n_batch,
                    ctypes.byref(new_n_past), hook, None)
                t2 = time.perf_counter()
                self._note_kept(ch, n_img)
                stats.encode_ms += (t1 - t0) * 1e3
                stats.prefill_ms += (t2 - t1) * 1e3
            else:
                t1 = time.perf_counter()
                rc = mtmd.mtmd_helper_eval_chunk_single(
                    self._mtmd, self._ctx, ch, n_past, seq_id, self.n_batch, last,
                    ctypes.byref(new_n_past))
                stats.prefill_ms += (time.perf_counter() - t1) * 1e3
            if rc != 0:
                raise DecodeError(f"prefill failed on {page.name} at chunk {i} (code {rc}): "
                                  f"{B.log.cause_since(mark)}")
            n_past = new_n_past.value
        return n_past

    def _generate(self, n_past: int, n_cells: int, max_tokens: int, s: Sampling,
                  stats: Stats, trace: "Trace | None" = None, on_token=None) -> str:
        """Sample up to max_tokens from position n_past. The KV cache holds n_cells
        entries; with M-RoPE an image takes more cells than positions, so the context
        limit is checked on cells."""
        sampler = self._sampler(s)
        B.fixation.llama_fixation_reset_stats(self._ctx)
        gen = GuardedOutput(s.repetition_guard)
        first = True   # the first token comes from the prefill's logits: a dense step
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")   # tokens split characters
        stream = codecs.getincrementaldecoder("utf-8")(errors="replace")
        t0 = time.perf_counter()
        try:
            stats.stop_reason = "max_tokens"
            for _ in range(max_tokens):
                tok = (int(np.argmax(self.logits(-1))) if s.greedy
                       else llama.llama_sampler_sample(sampler, self._ctx, -1))
                if self.is_stop(tok):
                    stats.stop_reason = "eos"
                    break
                piece = self._piece(tok)
                looping = gen.add(tok, piece)
                stats.tokens_generated += 1
                if trace is not None:   # the cells the step that produced `tok` attended
                    sel = [] if first else C.fixation_selection(self._ctx, 0)
                    trace.steps.append(TraceStep(utf8.decode(piece), trace.grid_ids(sel)))
                first = False
                if on_token is not None and on_token(stream.decode(piece)):
                    stats.stop_reason = "cancelled"
                    break
                if looping:
                    stats.stop_reason = "repetition"
                    break
                if n_cells >= self.n_ctx:
                    stats.stop_reason = "n_ctx"
                    break
                self._decode_one(tok, n_past)
                n_past += 1
                n_cells += 1
        finally:
            llama.llama_sampler_free(sampler)
        dt = time.perf_counter() - t0
        self._fixation_stats(stats)
        stats.decode_ms = dt * 1e3
        stats.tokens_per_s = stats.tokens_generated / dt if dt > 0 else 0.0
        return gen.out.decode("utf-8", errors="replace")

    def _draft_refused(self, s: Sampling, trace: bool) -> str | None:
        """Why a draft cannot be verified on this read (None: it can)."""
        if not s.greedy:
            return "drafts verify greedy decoding (temperature 0, no repeat penalty)"
        if trace:
            return "a trace draws fixation's steps, which drafts do not run with yet"
        if self.recurrent:
            return ("this model has recurrent layers (a hybrid text model): their state "
                    "cannot drop a step's rejected tokens, as a KV cache can")
        return None

    def _generate_drafted(self, n_past: int, n_cells: int, max_tokens: int, s: Sampling,
                          stats: Stats, draft, on_token=None) -> str:
        from .drafts import DraftMatcher, as_draft, generate_drafted, record_drafts, tokenize_draft

        draft = as_draft(draft)
        matcher = DraftMatcher(tokenize_draft(self, draft.text))
        gen = GuardedOutput(s.repetition_guard)
        B.fixation.llama_fixation_reset_stats(self._ctx)
        ds = generate_drafted(self, n_past, n_cells, max_tokens, stats, gen, matcher, on_token)
        self._fixation_stats(stats)
        record_drafts(stats, ds, draft)
        return gen.out.decode("utf-8", errors="replace")

    # --- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            llama.llama_batch_free(self._batch)
            self._batch = None
        if self._mtmd:
            mtmd.mtmd_free(self._mtmd)
            self._mtmd = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
