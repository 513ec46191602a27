"""Soak, reduced (issue 21): 100 pages in one process on both bundled readers, fixation and
merging switched every 2 pages, a bad input every 25 (one of each kind); then 20 Reader
create/read/close cycles. The full run (1,000 pages, 100 cycles) is a benchmark:
docs/benchmarks.md, "Soak". No assertion on speed (a benchmark's business, not a test's).

Statistics, for noise: the page soak compares the median RSS of the last 10 pages with the
first 10 after warm-up (flat to the KiB on the bundled readers); the cycles' RSS jumps between
two levels ~20 MiB apart as glibc hands each new engine thread an arena, so they compare the
floor (minimum) of the last cycles with the floor after the first ones: a leak raises the
floor, the allocator's jumps do not. Checked to fail: keeping each page's Result and image
(about 1 MiB a page) breaks the 5%, and Readers left open (34 MiB and 2 threads each) break
the cycles' bounds."""
from __future__ import annotations

from pathlib import Path

import pytest

from foveate.instruments import soak as S

PAGES, CYCLES = 100, 20
MODELS = Path(__file__).resolve().parents[1] / "models" / "reader"


@pytest.fixture(scope="module")
def run():
    return S.soak(PAGES, ("grid", "layout"), switch=2, bad_every=25, threads=2, models=MODELS)


def test_every_good_page_read(run):
    assert len(run.samples) == PAGES and run.empty_outputs == 0
    # every (reader, setting) ran, and read: the readers' CER on their pages stays low
    for row in run.speed():
        assert row["pages"] >= 4, row
        assert row["cer"] < 0.3, row


def test_every_bad_input_raised_its_error(run):
    assert [b[0] for b in run.bad] == S.BAD
    for kind, typ, msg, ok in run.bad:
        assert typ == "ImageError" and ok, (kind, typ, msg)


def test_memory_fds_threads_flat_after_warmup(run):
    mem = run.memory()
    assert run.warmup == 24 and run.window == 10   # every (reader, setting) ran before
    assert mem["rss_kib"]["growth"] < 0.05, S.format_soak(run)
    for m in ("fds", "threads"):
        assert mem[m]["last"] <= mem[m]["first"], S.format_soak(run)
        assert mem[m]["max_after_warmup"] <= mem[m]["warmed"], S.format_soak(run)


def test_reader_create_close_cycles_leak_nothing():
    rep = S.cycles(CYCLES, "grid", read=True, baseline=5, threads=2, models=MODELS)
    s = rep.samples
    first, last = s[rep.baseline - 1:rep.baseline + 4], s[-5:]
    floor = lambda ss, m: min(getattr(x, m) for x in ss)   # noqa: E731
    assert floor(last, "rss_kib") < 1.10 * floor(first, "rss_kib"), S.format_cycles(rep)
    assert floor(last, "threads") <= floor(first, "threads"), S.format_cycles(rep)
    assert max(x.fds for x in s[rep.baseline - 1:]) <= s[rep.baseline - 1].fds, \
        S.format_cycles(rep)
