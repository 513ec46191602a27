"""Many pages at once (Reader.read_many, `foveate read -np N`): continuous batching in one
context, each page its own sequence; greedy results equal the pages read alone."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import DATA, REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"


@pytest.fixture(scope="module")
def mixed_pages(tmp_path_factory):
    """Held-out grid pages of two heights (16 and 5 lines: 476 and 168 px), with ground truth."""
    from foveate.instruments.pages import LAYOUTS, write_pages

    d = tmp_path_factory.mktemp("mixed")
    short = write_pages(d, "heldout", 40, 3, replace(LAYOUTS["grid"], rows=5, min_rows=0))
    pngs = sorted(DATA.glob("pages/heldout-*.png"))[:4] + [p for p in short if str(p).endswith(".png")]
    order = [pngs[0], pngs[4], pngs[1], pngs[5], pngs[2], pngs[6], pngs[3]]
    return order


def _reader(**kw):
    from foveate import Reader
    return Reader(MODEL, MMPROJ, threads=2, **kw)


def test_pages_read_together_equal_pages_read_alone(mixed_pages):
    from PIL import Image

    sizes = {Image.open(p).size for p in mixed_pages}
    assert len(sizes) == 2                                  # two page sizes mix in one batch
    with _reader(parallel=3, n_ctx=3 * 2048) as r:
        alone = [r.read(p, max_tokens=400).text for p in mixed_pages]
        together = [res.text for res in r.read_many(mixed_pages, max_tokens=400)]
        as_done = list(r.read_many(mixed_pages, max_tokens=400, in_order=False))
    assert together == alone
    assert sorted(res.text for res in as_done) == sorted(alone)
    for p, text in zip(mixed_pages, together):             # and they are right
        from foveate.instruments.evaluate import cer
        assert cer(text.strip(), p.with_suffix(".txt").read_text().strip()) < 0.05, p


def test_fixation_in_a_batch_selects_per_page(mixed_pages):
    """Each page's selection is its own (the op never lists another sequence's cells,
    tests/test_fixation.py): a page decoded among others reads as it does alone."""
    with _reader(parallel=4, n_ctx=4 * 2048, fixation=0.05) as r:
        alone = [r.read(p, max_tokens=400).text for p in mixed_pages]
        res = list(r.read_many(mixed_pages, max_tokens=400))
    assert [x.text for x in res] == alone
    assert all(x.stats.fixation_ratio == 0.05 and x.stats.focal_layers for x in res)


def test_a_bad_page_yields_its_error_and_the_others_go_on(mixed_pages, tmp_path):
    from foveate.errors import ImageError

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with _reader(parallel=2, n_ctx=2 * 2048) as r:
        out = list(r.read_many([mixed_pages[0], bad, mixed_pages[1]], max_tokens=400))
        alone = [r.read(mixed_pages[0], max_tokens=400).text, r.read(mixed_pages[1], max_tokens=400).text]
    assert isinstance(out[1], ImageError) and "bad.png" in str(out[1])
    assert [out[0].text, out[2].text] == alone


def test_a_page_that_does_not_fit_its_share_is_refused_clearly(mixed_pages):
    from foveate.errors import ContextError

    with _reader(parallel=4, n_ctx=2048) as r:        # 512 cells a page: the image alone is 408
        (res,) = list(r.read_many(mixed_pages[:1], max_tokens=400))
    assert isinstance(res, ContextError)
    assert "exceed this page's share of the context (n_ctx 2048 / 4 pages = 512)" in str(res)


def test_cli_parallel_output_equals_sequential(mixed_pages, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(mixed_pages[:5]):
        (folder / f"p{i}.png").write_bytes(p.read_bytes())
    base = [sys.executable, "-m", "foveate", "read", str(folder), "-m", str(MODEL), "--mmproj",
            str(MMPROJ), "-t", "2", "-n", "400", "--format", "jsonl"]
    for np_, out in (("1", "seq"), ("3", "par")):
        r = subprocess.run(base + ["-np", np_, "-o", str(tmp_path / out)], capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
    import json
    for i in range(5):
        seq = [json.loads(x)["text"] for x in (tmp_path / "seq" / f"p{i}.jsonl").read_text().splitlines()]
        par = [json.loads(x)["text"] for x in (tmp_path / "par" / f"p{i}.jsonl").read_text().splitlines()]
        assert seq == par


def test_one_reader_shared_by_threads(mixed_pages):
    """ctypes releases the GIL, so without the Reader's lock two threads would decode on one
    context at once; with it every thread gets the text a lone caller gets."""
    from concurrent.futures import ThreadPoolExecutor

    with _reader() as r:
        want = [r.read(p, max_tokens=300).text for p in mixed_pages[:4]]
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda p: r.read(p, max_tokens=300).text, mixed_pages[:4] * 2))
    assert got == want * 2


def test_read_inside_read_many_is_refused(mixed_pages):
    with _reader(parallel=2, n_ctx=4096) as r:
        it = r.read_many(mixed_pages[:3], max_tokens=50)
        next(it)
        with pytest.raises(RuntimeError, match="inside read_many"):
            r.read(mixed_pages[0], max_tokens=5)
        it.close()
        assert r.read(mixed_pages[0], max_tokens=5).text   # usable again
