"""Engine layer: one language model + its image projector; image in, text out.

Drives llama.cpp and mtmd through llama-cpp-python's ctypes bindings, the same
path llama-mtmd-cli takes: tokenize the chat prompt with the image marker, run
the projector (encode), decode the image embeddings and text (prefill), then
sample token by token (decode). Each phase is timed for Result.stats.
"""
from __future__ import annotations

import codecs
import contextlib
import ctypes
import math
import os
import time
from dataclasses import dataclass, field

from ..native import bindings as B
from . import controls as C
from .kv_cache import kv_cache_type
from .controls import FIXATION_SAMPLE
from ..errors import ContextError, DecodeError, ModelError, ProjectorError
from ..inputs.gguf_check import read_gguf_info
from ..inputs.images import MAX_PIXELS, Page, load_page
from .notes import cutoff_warnings, page_warnings
from .families import check_method, identify, merge_auto_floor
from .repetition import GuardedOutput, RepetitionGuard
from .trace import GRID_PROJECTORS, Trace, TraceStep, TraceUnavailable


llama, mtmd = B.llama, B.mtmd

DEFAULT_PROMPT = "Read the text in the image."


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


def _merges(merge) -> bool:
    """Whether a merge setting drops rows (off and keep ratio 1 leave the image as stock)."""
    return merge not in (None, "off", 0, 1, 1.0)


@dataclass
class Stats:
    image_tokens: int = 0
    prompt_tokens: int = 0          # all prefilled positions' tokens (text + image)
    encode_ms: float = 0.0          # vision encoder + projector
    prefill_ms: float = 0.0         # decoding the prompt (text and image embeddings)
    decode_ms: float = 0.0          # generating
    tokens_generated: int = 0
    tokens_per_s: float = 0.0
    stop_reason: str = ""           # "eos", "max_tokens", "n_ctx", "repetition" (the output
                                    # looped: repeats cut) or "cancelled" (on_token)
    fixation_ratio: float = 0.0     # 0 = fixation off
    visual_tokens_attended: float = 0.0  # image tokens attended per decode step, mean over layers
    visual_tokens_selected: float = 0.0  # the focal layer's top-k (layers above it attend these)
    focal_layers: list = field(default_factory=list)
    fixation_off: str = ""          # why fixation, though asked for, did not run ("" = it ran
                                    # or was not asked for): a quantized KV cache on a GPU
    merge_ratio: float = 1.0        # keep ratio of the content tokens (1 = merging off)
    image_tokens_merged: int = 0    # image tokens the LLM prefilled after merging
    merge_ms: float = 0.0           # the merge itself (part of encode_ms)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Result:
    text: str
    stats: Stats = field(default_factory=Stats)
    image: str = ""
    warnings: list = field(default_factory=list)   # one-line notes (the CLI prints them)
    image_size: tuple = (0, 0)      # (width, height) of the page as given to the projector
    source: str = ""                # read_document: the document's name ...
    page: int = 0                   # ... the page number (1-based; 0: not from a document)
    n_pages: int = 0                # ... and its page count
    wall_s: float = 0.0             # the whole read, image decoding included
    trace: object = None            # read(..., trace=True): engine.trace.Trace


def _threads(n: int | None) -> int:
    return n if n and n > 0 else max(1, os.cpu_count() or 1)


@dataclass
class Checked:
    """What check_settings read from the GGUF headers, for the Engine that goes on to load."""
    model_name: str
    projector_type: str
    patch_size: int
    merge_score: str
    family: object
    type_k: int
    type_v: int


def check_settings(model, mmproj, *, n_ctx: int = 4096, n_batch: int = 2048, fixation=None,
                   fixation_k_min: int = 16, focal_layers=None, fixation_max_tokens: int = 8,
                   fixation_dilation: int = 0, fixation_refresh: int = 1,
                   fixation_sample: int = FIXATION_SAMPLE, merge=None,
                   merge_positions: str = "original", merge_score: str = "auto",
                   image_min_tokens=None, image_max_tokens=None, cache_type_k: str = "f16",
                   cache_type_v: str = "f16") -> Checked:
    """Every Engine setting and both files' headers, checked without loading anything: the
    Engine runs it first, and a driver that sends the loading elsewhere (read --ray) runs it
    so a bad value fails there, once, and not in every worker after a model load."""
    for what, v in (("image_min_tokens", image_min_tokens), ("image_max_tokens", image_max_tokens)):
        if v is not None and (int(v) != v or v < 1):
            raise ValueError(f"{what} must be a positive integer, got {v!r}")
    if image_min_tokens and image_max_tokens and image_min_tokens > image_max_tokens:
        raise ValueError(f"image_min_tokens {image_min_tokens} > image_max_tokens {image_max_tokens}")
    # as llama.cpp's -ctk / -ctv (a quantized V cache needs flash attention)
    type_k, type_v = kv_cache_type(cache_type_k), kv_cache_type(cache_type_v)
    minfo = read_gguf_info(model, ModelError, "model")
    if minfo.arch == "clip":
        raise ModelError(f"model file is an image projector (mmproj), not a language "
                         f"model: {model}")
    projector_type, patch_size = "", 14   # text-only engine: "auto" scores -> "duplicates"
    if mmproj is not None:  # None: text-only engine (benchmarks with synthetic images)
        pinfo = read_gguf_info(mmproj, ProjectorError, "projector")
        if pinfo.arch != "clip":
            raise ProjectorError(f"projector file is not an mmproj (architecture "
                                 f"'{pinfo.arch}'): {mmproj}")
        projector_type = pinfo.projector_type
        patch_size = int(pinfo.metadata.get("clip.vision.patch_size", 14) or 14)
    if n_ctx <= 0:
        raise ContextError(f"n_ctx must be positive, got {n_ctx}")
    if isinstance(n_batch, bool) or not isinstance(n_batch, int) or n_batch < 1:
        raise ValueError(f"n_batch (-b) must be an integer >= 1, got {n_batch!r}")
    # fixation's settings fail here, before anything loads, even with fixation off (the
    # focal layers against the header's layer count; llama.cpp's own count is checked again
    # once the model is loaded)
    C.check_fixation_ratio(fixation or 0.0)
    n_layer = minfo.metadata.get(f"{minfo.arch}.block_count")
    C.check_fixation_settings(fixation_k_min, focal_layers, fixation_max_tokens,
                              fixation_dilation, fixation_refresh, fixation_sample,
                              int(n_layer) if isinstance(n_layer, int) else None)
    from .merging import check_merge_positions, parse_merge, resolve_merge_score
    parse_merge(merge)
    check_merge_positions(merge_positions)
    merge_score = resolve_merge_score(merge_score, projector_type)
    # the OCR family (engine/families.py): presets, and the methods it refuses
    family = identify(minfo.metadata, projector_type)
    check_method(family, bool(fixation), _merges(merge))
    return Checked(str(minfo.metadata.get("general.name", "")), projector_type, patch_size,
                   merge_score, family, type_k, type_v)


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
                 cache_type_v: str = "f16"):
        self.model_path = str(model)
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
                             cache_type_v=cache_type_v)
        self.image_min_tokens, self.image_max_tokens = image_min_tokens, image_max_tokens
        type_k, type_v = pre.type_k, pre.type_v
        self.model_name = pre.model_name
        self.projector_type = pre.projector_type
        if mmproj is not None:
            self.patch_size = pre.patch_size
        merge_score = pre.merge_score
        self.family = pre.family
        self.image_batch_hook = None   # tests: called with each decoded image sub-batch
        self.threads = _threads(threads)

        mark = B.log.mark()
        mp = llama.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        self._model = llama.llama_model_load_from_file(self.model_path.encode(), mp)
        if not self._model:
            raise ModelError(f"llama.cpp could not load model {model}: "
                             f"{B.log.cause_since(mark)}")
        self._vocab = llama.llama_model_get_vocab(self._model)
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
        self.n_batch = llama.llama_n_batch(self._ctx)

        self.fixation = 0.0
        self.set_fixation(fixation or 0.0, fixation_k_min, focal_layers, fixation_max_tokens,
                          fixation_dilation, fixation_refresh, fixation_sample)

        self._batch = llama.llama_batch_init(1, 0, 1)
        self._template = llama.llama_model_chat_template(self._model, None)
        self.marker = mtmd.mtmd_default_marker().decode()
        self.merge = "off"
        self.merge_positions = "original"
        self.merge_score = merge_score   # text-only engines: what the bench's synthetic merge uses
        if mmproj is not None:
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
        check_method(self.family, False, _merges(merge))
        self.merge, positions, score = C.apply_merge(self._mtmd, self.projector_type, merge,
                                                     positions, score)
        if B.merge.mtmd_merge_set_auto_floor(self._mtmd, merge_auto_floor(self.family)) != 0:
            raise ValueError("mtmd_merge_set_auto_floor rejected the family's floor")
        if positions is not None:
            self.merge_positions = positions
        if score is not None:
            self.merge_score = score

    def merge_kept(self) -> list[int]:
        """Original image-token ids kept by the last merge (ascending); [] if none merged."""
        return C.merge_kept(self._mtmd)

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

    def _init_projector(self, n_gpu_layers: int) -> None:
        model, mmproj = self.model_path, self.mmproj_path
        mparams = mtmd.mtmd_context_params_default()
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

    # --- prompt ------------------------------------------------------------------------------
    def format_prompt(self, prompt: str) -> str:
        """The model's own chat template around one user turn: image marker + prompt."""
        # an empty prompt is the image alone (LightOnOCR is prompted so)
        content = f"{self.marker}\n{prompt}" if prompt else self.marker
        if not self._template:
            return content
        if self.family.family is not None and self.family.family.jinja:
            return self._render_jinja(content, prompt)
        role, text = b"user", content.encode()
        msg = llama.llama_chat_message(role=role, content=text)
        arr = (llama.llama_chat_message * 1)(msg)
        buf = ctypes.create_string_buffer(len(text) * 2 + 4096)
        n = llama.llama_chat_apply_template(self._template, arr, 1, True, buf, len(buf))
        if n < 0:  # a template llama.cpp does not know (PaddleOCR-VL's): render its jinja
            return self._render_jinja(content, prompt)
        if n > len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            n = llama.llama_chat_apply_template(self._template, arr, 1, True, buf, len(buf))
        return buf.raw[:n].decode("utf-8", errors="replace")

    def _render_jinja(self, content: str, prompt: str = "") -> str:
        """The GGUF's jinja chat template rendered in a sandbox (as llama-server's --jinja
        does) around one user turn; the bare content if it does not render. A template that
        reads only lists of parts (PaddleOCR-VL's) is given an image part and the prompt; what
        it writes for the image is replaced by mtmd's marker (mtmd adds the model's own image
        tokens around it)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment   # a dependency (pyproject)

        tok = lambda t: self._piece(t).decode("utf-8", errors="replace") if t >= 0 else ""
        try:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(ValueError(msg))
            tpl = env.from_string(self._template.decode("utf-8", errors="replace"))
            render = lambda c: tpl.render(
                messages=[{"role": "user", "content": c}], add_generation_prompt=True,
                bos_token=tok(llama.llama_vocab_bos(self._vocab)),
                eos_token=tok(llama.llama_vocab_eos(self._vocab)))
            out = render(content)
            if self.marker in out:
                return out
            text = [{"type": "text", "text": prompt}] if prompt else []
            with_image, without = render([{"type": "image"}] + text), render(text)
        except Exception:   # noqa: BLE001 - any template error: the bare content, as before
            return content
        # the image's part of the rendering: what lies between the common prefix and suffix
        i = len(os.path.commonprefix([with_image, without]))
        j = len(os.path.commonprefix([with_image[i:][::-1], without[i:][::-1]]))
        if len(with_image) - i - j <= 0:
            return content
        return with_image[:i] + self.marker + with_image[len(with_image) - j:]

    # --- sampling ----------------------------------------------------------------------------
    def _sampler(self, s: Sampling):
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        add = lambda smp: llama.llama_sampler_chain_add(chain, smp)
        if s.repeat_penalty != 1.0:
            n_vocab = self.n_vocab
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
             sampling: Sampling | None = None, trace: bool = False, on_token=None) -> Result:
        """trace: record where fixation looked at every step (Result.trace; needs fixation).
        on_token(text): called with each token's text as it is generated (streaming); a true
        return value stops the page there (stop_reason "cancelled": a client went away)."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if trace and not self.fixation:
            raise ValueError("a trace shows fixation's selections: turn fixation on (--fixation 0.05)")
        t0 = time.perf_counter()
        page = image if isinstance(image, Page) else load_page(image, self.image_max_pixels)
        n_past, stats = self.prefill_page(page, prompt)
        tr = self._new_trace(page, stats) if trace else None
        out = self._generate(n_past, stats.prompt_tokens, max_tokens, sampling or Sampling(),
                             stats, tr, on_token)
        notes = page_warnings(self.model_name, page.width, page.height, out)
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
                    f"n_ctx={self.n_ctx}: raise n_ctx (-c)")
            mem = llama.llama_get_memory(self._ctx)
            if clear:
                llama.llama_memory_clear(mem, True)
            else:
                llama.llama_memory_seq_rm(mem, seq_id, -1, -1)
            n_past = self._prefill(chunks, n_chunks, page, stats, seq_id)
        return n_past, stats

    def _prefill(self, chunks, n_chunks: int, page: Page, stats: Stats, seq_id: int = 0) -> int:
        n_past = 0
        new_n_past = llama.llama_pos(0)
        for i in range(n_chunks):
            ch = mtmd.mtmd_input_chunks_get(chunks, i)
            last = i == n_chunks - 1
            mark = B.log.mark()
            if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                t0 = time.perf_counter()
                if mtmd.mtmd_encode_chunk(self._mtmd, ch) != 0:
                    raise DecodeError(f"image encoder failed on {page.name}: "
                                      f"{B.log.cause_since(mark)}")
                embd = mtmd.mtmd_get_output_embd(self._mtmd)
                self._merge_stats(stats, mtmd.mtmd_input_chunk_get_n_tokens(ch))
                t1 = time.perf_counter()
                hook = (mtmd.mtmd_helper_post_decode_callback(
                            lambda b, _u: self.image_batch_hook(b.contents) or 0)
                        if self.image_batch_hook else mtmd.mtmd_helper_post_decode_callback())
                rc = mtmd.mtmd_helper_decode_image_chunk(
                    self._mtmd, self._ctx, ch, embd, n_past, seq_id, self.n_batch,
                    ctypes.byref(new_n_past), hook, None)
                t2 = time.perf_counter()
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
                tok = llama.llama_sampler_sample(sampler, self._ctx, -1)
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
