"""`foveate bench`: time encode, prefill and decode for one model and page.

Rows are configurations, columns are phases, so later features (fixation,
merging, stock llama.cpp) add rows to the same table. Decode always generates
exactly `n_decode` tokens (EOS is ignored), so random-weight models time the
same as trained ones. With `image_tokens=N` instead of an image, N random
embeddings stand in for a projector's output (models without a usable mmproj).
"""
from __future__ import annotations

import ctypes
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..native import bindings as B
from ..engine.core import FIXATION_SAMPLE, Engine
from ..errors import ContextError, DecodeError
from ..inputs.images import load_page
from .synthetic_kv import fill_image_cells, prefill_synthetic

llama = B.llama


@dataclass
class BenchRow:
    config: str
    image_tokens: int
    encode_ms: float
    prefill_ms: float
    prefill_tok_s: float
    decode_ms: float
    decode_tok_s: float
    merge_ms: float = 0.0          # token merging (inside encode for real images)
    image_tokens_merged: int = 0   # what the LLM prefilled (0 = no merging)
    prompt_tokens: int = 0         # every prefilled token (text and image)
    crashed: bool = False          # the run died (stock llama.cpp on AMX): no timings
    host_us: float | None = None   # fixation rows: host time fixation added per ubatch (µs)


def _fixation_tag(refresh: int, sample: int) -> str:
    return (f", refresh {refresh}" if refresh > 1 else "") + (f", sample {sample}" if sample != FIXATION_SAMPLE else "")


def _decode_fixed(eng: Engine, n_past: int, n: int) -> float:
    """Greedy-decode exactly n tokens from n_past; return seconds."""
    t0 = time.perf_counter()
    for _ in range(n):
        tok = int(np.argmax(eng.logits()))
        eng._decode_one(tok, n_past)
        n_past += 1
    return time.perf_counter() - t0


def rewinder(eng: Engine, n_past: int, n_seq: int = 1):
    """A callable that takes sequences 0 .. n_seq-1 back to n_past, so every timed run decodes
    from the same context: the KV cache drops the later cells. A model with recurrent layers
    (whose state cannot be cut back) gets sequence 0's state, saved now, restored instead, and
    the others copied from it again (sequences 1.. are copies of 0, sharing its cells: restoring
    each on its own would need a copy of the prompt's cells per sequence)."""
    mem = llama.llama_get_memory(eng._ctx)
    if not eng.recurrent:
        return lambda: [llama.llama_memory_seq_rm(mem, s, n_past, -1) for s in range(n_seq)]
    n = llama.llama_state_seq_get_size(eng._ctx, 0)
    buf = (ctypes.c_uint8 * n)()
    if llama.llama_state_seq_get_data(eng._ctx, buf, n, 0) != n:
        raise DecodeError("could not save sequence 0's state")

    def rewind():
        for s in range(n_seq):
            llama.llama_memory_seq_rm(mem, s, -1, -1)
        if llama.llama_state_seq_set_data(eng._ctx, buf, n, 0) != n:
            raise DecodeError("could not restore sequence 0's state")
        for s in range(1, n_seq):
            llama.llama_memory_seq_cp(mem, 0, s, -1, -1)
    return rewind


def _synthetic_image(eng: Engine, n_tokens: int, merge=None, seed: int = 0):
    """n_tokens random embeddings, merged when `merge` is set (the C merge mtmd runs; no
    pixels here, so "auto" uses the redundancy term only). (rows, kept ids, merge ms)."""
    # the input width: n_embd, or wider for models that take extra features per image row
    # (Qwen3-VL: deepstack, 4 x n_embd)
    n_embd = llama.llama_model_n_embd_inp(eng._model)
    rng = np.random.default_rng(seed)
    embd = rng.standard_normal((n_tokens, n_embd)).astype(np.float32)
    if merge in (None, "off", 0):
        return embd, np.arange(n_tokens), 0.0
    from ..engine.merging import merge_rows

    t0 = time.perf_counter()
    rows, ids, _ = merge_rows(embd, merge=merge, threads=eng.threads, score=eng.merge_score)
    return rows, ids, (time.perf_counter() - t0) * 1e3


def run_once(eng: Engine, image=None, image_tokens: int = 0, n_decode: int = 32,
             fill: str = "prefill") -> BenchRow:
    n_past, row = _prefill(eng, image, image_tokens, n_decode, fill=fill)
    dt = _decode_fixed(eng, n_past, n_decode)
    row.decode_ms, row.decode_tok_s = dt * 1e3, (n_decode / dt if dt else 0.0)
    return row


def _prefill(eng: Engine, image, image_tokens: int, n_decode: int,
             merge=None, fill: str = "prefill") -> tuple[int, BenchRow]:
    """Clear the cache and prefill a page (or synthetic image tokens, merged by `merge`;
    a real page is merged by the engine's own setting); (n_past, timings). fill="state":
    the synthetic image's cells are loaded, not prefilled (synthetic_kv; prefill time 0)."""
    llama.llama_memory_clear(llama.llama_get_memory(eng._ctx), True)
    if image is not None:
        # the real path: tokenize, encode, prefill; then n_decode fixed tokens
        page = load_page(image, eng.image_max_pixels)
        n_past, st = eng.prefill_page(page)
        enc, pre, n_img, n_pre = st.encode_ms, st.prefill_ms, st.image_tokens, st.prompt_tokens
        merge_ms, n_merged = st.merge_ms, st.image_tokens_merged
    else:
        if image_tokens + n_decode >= eng.n_ctx:
            raise ContextError(f"{image_tokens} image tokens + {n_decode} decode tokens exceed "
                               f"n_ctx={eng.n_ctx}")
        if fill == "state":
            n_past = fill_image_cells(eng, image_tokens)
            return n_past, BenchRow("foveate (dense)", image_tokens, 0.0, 0.0, 0.0, 0.0, 0.0,
                                    0.0, image_tokens, image_tokens)
        rows, ids, merge_ms = _synthetic_image(eng, image_tokens, merge)
        t0 = time.perf_counter()
        n_past = prefill_synthetic(eng, image_tokens, image=(rows, ids))
        enc, pre, n_img, n_pre = 0.0, (time.perf_counter() - t0) * 1e3, image_tokens, len(rows)
        n_merged = len(rows)
    return n_past, BenchRow("foveate (dense)", n_img, enc, pre,
                            n_pre / (pre / 1e3) if pre else 0.0, 0.0, 0.0,
                            merge_ms, n_merged, n_pre)


def _time_fixations(eng: Engine, fixations, repetitions: int, config: tuple, restart, decode,
                    n_decode: int) -> dict:
    """Seconds of decode(n_decode) per fixation ratio, `repetitions` times, interleaved, each
    from the same cache (restart() drops the decoded tokens). After switching config
    (config = (k_min, focal_layers, refresh, sample)) one untimed step builds its graph, so no timed
    run contains a rebuild. Fixation is off afterwards. Also returns, per ratio, the host time
    fixation added per ubatch (µs, median over the repetitions)."""
    from ..engine.controls import fixation_stats

    k_min, focal_layers, refresh, sample = config
    per = {r: [] for r in fixations}
    host = {r: [] for r in fixations}
    for _ in range(repetitions):
        for r in fixations:
            eng.set_fixation(r, k_min, focal_layers, refresh=refresh, sample=sample)
            restart()
            decode(1)
            restart()
            B.fixation.llama_fixation_reset_stats(eng._ctx)
            per[r].append(decode(n_decode))
            host[r].append(fixation_stats(eng._ctx).host_us)
    eng.set_fixation(0.0)
    return per, {r: statistics.median(v) for r, v in host.items()}


def _decode_fixed_parallel(eng: Engine, n_past: int, n: int, n_seq: int) -> float:
    """n steps of one token for each of n_seq sequences in one batch; seconds."""
    batch = llama.llama_batch_init(n_seq, 0, 1)
    try:
        t0 = time.perf_counter()
        for step in range(n):
            batch.n_tokens = n_seq
            for s in range(n_seq):
                batch.token[s] = int(np.argmax(eng.logits(s))) if step else 0
                batch.pos[s] = n_past + step
                batch.n_seq_id[s] = 1
                batch.seq_id[s][0] = s
                batch.logits[s] = True
            if llama.llama_decode(eng._ctx, batch) != 0:
                raise DecodeError(f"parallel decode failed at step {step}")
        return time.perf_counter() - t0
    finally:
        llama.llama_batch_free(batch)


def run_parallel_configs(eng: Engine, image_tokens: int, n_decode: int, n_seq: int,
                         fixations: tuple[float, ...] = (0.0,), repetitions: int = 3,
                         fixation_k_min: int = 16, focal_layers=None,
                         refresh: int = 1, fill: str = "prefill", sample: int = FIXATION_SAMPLE) -> list[BenchRow]:
    """n_seq pages decoding together: one synthetic image prefilled for sequence 0 and shared
    by sequences 1..n_seq-1 (llama_memory_seq_cp on a unified cache: every sequence owns
    the same image cells, so each row attends to a full page), then n_seq tokens per step.
    Rows as in run_configs; tok/s counts all sequences' tokens."""
    if image_tokens + n_decode * n_seq >= eng.n_ctx:
        raise ContextError(f"{image_tokens} image tokens + {n_seq} x {n_decode} decode tokens "
                           f"exceed n_ctx={eng.n_ctx}")
    n_past, first = _prefill(eng, None, image_tokens, n_decode, fill=fill)
    pre = first.prefill_ms
    mem = llama.llama_get_memory(eng._ctx)
    for s in range(1, n_seq):
        llama.llama_memory_seq_cp(mem, 0, s, -1, -1)
    restart = rewinder(eng, n_past, n_seq)
    _decode_fixed_parallel(eng, n_past, min(2, n_decode), n_seq)  # warm-up

    per, host = _time_fixations(eng, fixations, repetitions, (fixation_k_min, focal_layers, refresh, sample),
                                restart, lambda n: _decode_fixed_parallel(eng, n_past, n, n_seq), n_decode)
    rows = []
    for r in fixations:
        dt = statistics.median(per[r])
        name = (f"foveate x{n_seq}, fixation off" if r == 0
                else f"foveate x{n_seq}, fixation {r:g}{_fixation_tag(refresh, sample)}")
        rows.append(BenchRow(name, image_tokens, 0.0, pre, first.prefill_tok_s, dt * 1e3,
                             n_decode * n_seq / dt if dt else 0.0, host_us=host[r]))
    return rows


def run_merge_configs(eng: Engine, image=None, image_tokens: int = 0, n_decode: int = 32,
                      merges=("off",), repetitions: int = 3) -> list[BenchRow]:
    """One row per merge setting ("off", a keep ratio, "auto"): full prefill + fixed decode,
    settings interleaved `repetitions` times, median per row."""
    per = {m: [] for m in merges}
    _run_merged(eng, image, image_tokens, min(4, n_decode), merges[0])  # warm-up (largest graph)
    for _ in range(repetitions):
        for m in merges:
            per[m].append(_run_merged(eng, image, image_tokens, n_decode, m))
    if image is not None:
        eng.set_merge(None)
    rows = []
    for m in merges:
        r = median_row(per[m])
        by = "" if eng.merge_score == "norm" else f" ({eng.merge_score})"
        r.config = "foveate, merge off" if m in ("off", None) else f"foveate, merge {m}{by}"
        rows.append(r)
    return rows


def _run_merged(eng: Engine, image, image_tokens: int, n_decode: int, merge) -> BenchRow:
    merge = None if merge == "off" else merge
    if image is not None:
        eng.set_merge(merge)
    n_past, row = _prefill(eng, image, image_tokens, n_decode, merge)
    dt = _decode_fixed(eng, n_past, n_decode)
    row.decode_ms, row.decode_tok_s = dt * 1e3, (n_decode / dt if dt else 0.0)
    return row


def stock_rows(model: str, n_prompt: int, n_decode: int, threads: int, repetitions: int,
               flash_attn: bool | None) -> list[BenchRow]:
    """Unpatched llama.cpp's llama-bench on the same model file: prefill of n_prompt tokens,
    decode of n_decode tokens at depth n_prompt (see instruments.stock). Where stock crashes
    (the AMX tile-config bug), a row says so and stock + patch 0001 alone stands in for it."""
    from . import stock

    def row(name: str, with_0001: bool) -> BenchRow:
        pre_ts, dec_ts = stock.run(model, n_prompt, n_decode, threads, repetitions, flash_attn,
                                   with_0001=with_0001)
        return BenchRow(name, n_prompt, 0.0, n_prompt / pre_ts * 1e3, pre_ts,
                        n_decode / dec_ts * 1e3, dec_ts, 0.0, n_prompt)

    try:
        return [row("stock llama.cpp (llama-bench)", False)]
    except stock.StockCrashed as e:
        crashed = BenchRow(e.reason, n_prompt, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, n_prompt, crashed=True)
        try:
            return [crashed, row("stock llama.cpp + patch 0001 only (llama-bench)", True)]
        except stock.StockCrashed as e2:
            return [crashed, BenchRow(e2.reason.replace("stock llama.cpp", "stock + 0001"),
                                      n_prompt, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, n_prompt, crashed=True)]


def run_configs(eng: Engine, image=None, image_tokens: int = 0, n_decode: int = 32,
                fixations: tuple[float, ...] = (0.0,), repetitions: int = 3,
                fixation_k_min: int = 16, focal_layers=None, refresh: int = 1,
                fill: str = "prefill", sample: int = FIXATION_SAMPLE) -> list[BenchRow]:
    """Prefill once, then time the same fixed-length decode under each fixation ratio
    (0 = dense), interleaved, `repetitions` times; the decoded tokens are removed from the
    cache between runs, so every row decodes from the identical context. Median per row."""
    n_past, first = _prefill(eng, image, image_tokens, n_decode, fill=fill)
    rewind = rewinder(eng, n_past)
    _decode_fixed(eng, n_past, min(4, n_decode))  # warm-up
    # greedy from whatever logits are current: timing does not depend on the tokens
    per, host = _time_fixations(eng, fixations, repetitions, (fixation_k_min, focal_layers, refresh, sample),
                                rewind, lambda n: _decode_fixed(eng, n_past, n), n_decode)
    rows = []
    for r in fixations:
        dt = statistics.median(per[r])
        name = "foveate, fixation off" if r == 0 else f"foveate, fixation {r:g}{_fixation_tag(refresh, sample)}"
        rows.append(BenchRow(name, first.image_tokens, first.encode_ms, first.prefill_ms,
                             first.prefill_tok_s, dt * 1e3, n_decode / dt if dt else 0.0,
                             host_us=host[r]))
    return rows


def median_row(rows: list[BenchRow]) -> BenchRow:
    med = lambda f: statistics.median(getattr(r, f) for r in rows)
    return BenchRow(rows[0].config, rows[0].image_tokens, med("encode_ms"), med("prefill_ms"),
                    med("prefill_tok_s"), med("decode_ms"), med("decode_tok_s"), med("merge_ms"),
                    rows[0].image_tokens_merged, rows[0].prompt_tokens)


def format_table(rows: list[BenchRow]) -> str:
    merging = any(r.image_tokens_merged and r.image_tokens_merged != r.image_tokens for r in rows)
    hosted = any(r.host_us is not None for r in rows)
    head = ["config", "image tok", "encode ms", "prefill ms", "prefill tok/s", "decode ms",
            "decode tok/s"] + (["merge ms", "prefill speed-up"] if merging else []) \
        + (["fixation host µs/ubatch"] if hosted else [])
    ran = [r for r in rows if not r.crashed] or rows
    base = next((r.prefill_ms for r in ran if r.config.endswith("merge off")), ran[0].prefill_ms)
    body = [[r.config,
             str(r.image_tokens) + (f" -> {r.image_tokens_merged}" if merging else "")]
            + (["-"] * (5 + 2 * merging) if r.crashed else
               [f"{r.encode_ms:.1f}", f"{r.prefill_ms:.1f}",
                f"{r.prefill_tok_s:.1f}", f"{r.decode_ms:.1f}", f"{r.decode_tok_s:.2f}"]
               + ([f"{r.merge_ms:.1f}", f"{base / r.prefill_ms:.2f}x" if r.prefill_ms else "-"]
                  if merging else []))
            + ([f"{r.host_us:.0f}" if r.host_us is not None else "-"] if hosted else [])
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(b) for b in body])
