"""`foveate bench --page-time`: the time a user waits for one page, by phase.

One real page through the real projector: encode, merge, prefill, then exactly `n_decode`
tokens (EOS ignored, a realistic page's length: 800 by default). Rows: dense, fixation,
merging, both, and stock llama.cpp's prefill + decode of the same token counts (its encode is
foveate's: the vision encoder is stock clip code, unchanged by the patches). The encode runs
once per merge setting (fixation does not touch it); the decode rows of one merge setting
decode from the same prefilled cache. Each phase's share of the page shows what a speed-up
of one phase is worth.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..native import bindings as B
from .bench import _decode_fixed, _prefill, rewinder

llama = B.llama


@dataclass
class PageTimeRow:
    config: str
    image_tokens: int
    prefilled_image_tokens: int
    encode_s: float
    merge_s: float
    prefill_s: float
    decode_s: float
    note: str = ""

    @property
    def page_s(self) -> float:
        return self.encode_s + self.merge_s + self.prefill_s + self.decode_s


def run_page_time(eng, image, n_decode: int, fixation: float, merge: str,
                  fix_config: tuple = (16, None, 1, 64)) -> tuple[list[PageTimeRow], int]:
    """Rows dense / fixation / merge / merge + fixation for one page; also the prompt tokens
    of the dense prefill (what a stock row prefills)."""
    k_min, focal, refresh, sample = fix_config
    rows, n_prompt = [], 0
    for m in ("off", merge):
        eng.set_merge(None if m == "off" else m)
        # no warm-up page: at real sizes it would double the longest phase, for milliseconds
        n_past, pre = _prefill(eng, image, 0, n_decode)
        n_prompt = n_prompt or pre.prompt_tokens
        rewind = rewinder(eng, n_past)
        for f in (0.0, fixation):
            eng.set_fixation(f, k_min, focal, refresh=refresh, sample=sample)
            _decode_fixed(eng, n_past, 1)  # builds this setting's decode graph
            rewind()
            dt = _decode_fixed(eng, n_past, n_decode)
            rewind()
            name = ("dense" if m == "off" and not f else
                    f"fixation {f:g}" if m == "off" else
                    f"merge {m}" if not f else f"merge {m} + fixation {f:g}")
            # the encode timer includes the merge (it runs inside mtmd's encode)
            rows.append(PageTimeRow(name, pre.image_tokens, pre.image_tokens_merged or pre.image_tokens,
                                    (pre.encode_ms - pre.merge_ms) / 1e3, pre.merge_ms / 1e3,
                                    pre.prefill_ms / 1e3, dt))
    eng.set_fixation(0.0)
    eng.set_merge(None)
    return rows, n_prompt


def stock_row(model: str, dense: PageTimeRow, n_prompt: int, n_decode: int, threads: int,
              flash_attn) -> PageTimeRow:
    """Stock llama-bench: prefill of the dense page's prompt tokens, decode of n_decode at
    that depth; encode = the dense row's (the same clip code). On an AMX Xeon where stock
    crashes, stock + patch 0001 only stands in (named so)."""
    from . import stock

    note = "encode: foveate's (same clip code)"
    try:
        pre_ts, dec_ts = stock.run(model, n_prompt, n_decode, threads, 1, flash_attn)
        name = "stock llama.cpp"
    except stock.StockCrashed as e:
        pre_ts, dec_ts = stock.run(model, n_prompt, n_decode, threads, 1, flash_attn, with_0001=True)
        name, note = "stock llama.cpp + patch 0001 only", f"{e.reason}; " + note
    return PageTimeRow(name, dense.image_tokens, dense.image_tokens, dense.encode_s, 0.0,
                       n_prompt / pre_ts, n_decode / dec_ts, note)


def format_page_table(rows: list[PageTimeRow]) -> str:
    dense = next(r for r in rows if r.config == "dense")
    head = ["config", "image tok", "encode s", "merge s", "prefill s", "decode s", "page s",
            "vs dense", "share: encode / prefill / decode"]
    body = []
    for r in rows:
        tot = r.page_s
        share = " / ".join(f"{100 * x / tot:.0f}%" for x in (r.encode_s + r.merge_s, r.prefill_s,
                                                              r.decode_s)) if tot else "-"
        tok = str(r.image_tokens) + (f" -> {r.prefilled_image_tokens}"
                                     if r.prefilled_image_tokens != r.image_tokens else "")
        body.append([r.config + (f" ({r.note})" if r.note else ""), tok, f"{r.encode_s:.2f}",
                     f"{r.merge_s:.3f}", f"{r.prefill_s:.2f}", f"{r.decode_s:.2f}", f"{tot:.2f}",
                     f"{dense.page_s / tot:.2f}x" if tot else "-", share])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(b) for b in body])
