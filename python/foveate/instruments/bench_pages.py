"""`foveate bench --pages K -np N`: whole pages through continuous batching (engine/batch.py,
what Reader.read_many runs), the same K
held-out generated pages at each parallelism, side by side in one run: pages/s, generated
tokens/s, and the ratio to one page at a time. The real projector path (encode, merge,
prefill, decode), so it needs the model's mmproj."""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class PagesRow:
    parallel: int
    pages: int
    seconds: float
    tokens: int

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def held_out_pages(k: int, layout: str = "grid"):
    """K held-out generated pages as PIL images (the bundled readers' own kind of page)."""
    from .pages import LAYOUTS, make_page

    return [make_page("heldout", 1000 + i, LAYOUTS[layout]).image for i in range(k)]


def run_pages(model, mmproj, k: int, parallels, threads: int | None, max_tokens: int,
              reader_kwargs: dict | None = None) -> list[PagesRow]:
    from ..engine.batch import read_many
    from ..engine.core import Engine, Sampling

    pages = held_out_pages(k)
    top = max(parallels)
    kw = dict(reader_kwargs or {})
    kw.setdefault("n_ctx", 2048 * top)
    rows = []
    eng = Engine(model, mmproj, threads=threads, n_seq=top, kv_unified=top > 1, **kw)
    try:
        list(read_many(eng, pages[:1], None, max_tokens, Sampling(), 1))   # warm-up
        for n in parallels:
            t0 = time.perf_counter()
            res = [r for _, r in read_many(eng, pages, None, max_tokens, Sampling(), n)]
            dt = time.perf_counter() - t0
            bad = [x for x in res if isinstance(x, Exception)]
            if bad:
                raise bad[0]
            rows.append(PagesRow(n, len(res), dt, sum(x.stats.tokens_generated for x in res)))
    finally:
        eng.close()
    return rows


def format_pages_table(rows: list[PagesRow]) -> str:
    base = rows[0].pages_per_s if rows and rows[0].parallel == 1 else None
    out = ["| pages in flight (-np) | pages | seconds | pages/s | tokens/s | vs -np 1 |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.pages_per_s / base:.2f}x" if base else ""
        out.append(f"| {r.parallel} | {r.pages} | {r.seconds:.2f} | {r.pages_per_s:.2f} | "
                   f"{r.tokens_per_s:.0f} | {ratio} |")
    return "\n".join(out)
