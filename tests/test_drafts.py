"""Draft-verified decoding (engine/drafts.py): proposals from a draft and from the output's
own repeats, verified many tokens per step; the text is plain greedy decoding's whatever the
draft (right, wrong, empty, huge, binary, another page, another language)."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest

from conftest import DATA, REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"
PAGES = sorted((DATA / "pages").glob("*.png"))


def test_the_matcher_follows_the_draft_and_resyncs_after_a_miss():
    from foveate.engine.drafts import DraftMatcher

    d = list(range(100, 140))
    m = DraftMatcher(d, self_lookup=False)
    assert m.propose([100]) == (d[1:4], "text")            # in step with the draft: k = 3
    m.advance(3, 3, "text")                                 # all taken: k + 1 rows double
    assert m.k == 7 and m.propose([100, 101, 102, 103, 104]) == (d[5:12], "text")
    m.advance(2, 7, "text")                                 # the model left the draft ...
    got, src = m.propose([100, 101, 102, 103, 104, 105, 106, 107, 999])
    assert got == [] and src == ""                          # ... no suffix of it is there
    got, src = m.propose([999, 120, 121])                   # back on the draft, elsewhere
    assert src == "text" and got[0] == 122
    assert DraftMatcher([], self_lookup=False).propose([1, 2, 3]) == ([], "")


def test_self_lookup_proposes_what_followed_the_last_repeat():
    from foveate.engine.drafts import DraftMatcher

    m = DraftMatcher([])
    out = [7, 8, 9, 1, 2, 3, 7, 8]
    got, src = m.propose(out)
    assert src == "self" and got[:2] == [9, 1]


def test_a_useless_draft_rests():
    from foveate.engine.drafts import DraftMatcher

    m = DraftMatcher(list(range(50)), self_lookup=False)
    for _ in range(5):                                      # every proposal missed
        got, src = m.propose([0])
        m.advance(0, len(got), src)
        m.cursor = 0
    assert m.k == 1 and m.rest > 0
    assert m.propose([0]) == ([], "")                       # resting: plain steps


def _inject(text: str, rate: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") if c != "\n" and rng.random() < rate
                   else c for c in text)


def _drafts(page):
    truth = page.with_suffix(".txt").read_text()
    other = PAGES[-1].with_suffix(".txt").read_text()
    return {"truth": truth, "errors 5%": _inject(truth, 0.05), "errors 20%": _inject(truth, 0.2),
            "empty": "", "other page": other, "huge": truth * 100,
            "binary": bytes(range(256)).decode("latin-1") * 8,
            "another language": "Der schnelle braune Fuchs springt über den faulen Hund.\n" * 20}


@pytest.mark.parametrize("merge", [None, 0.84])
def test_the_text_is_plain_greedy_decodings_whatever_the_draft(merge):
    """Flash attention off: every row of a verification step runs the kernels a one-row step
    runs, so the text is plain decoding's exactly (with flash attention on, see the next
    test). The fast path really ran: the right draft was accepted almost whole."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2, flash_attn=False, merge=merge)
    try:
        for page in PAGES[:3]:
            plain = eng.read(load_page(page), max_tokens=600)
            for name, draft in _drafts(page).items():
                res = eng.read(load_page(page), max_tokens=600, draft=draft)
                assert res.text == plain.text, (page.name, name)
                assert res.stats.stop_reason == plain.stats.stop_reason, (page.name, name)
                st = res.stats
                assert st.draft_source and st.draft_steps >= 0, (page.name, name)
                if name == "truth":
                    assert st.draft_accepted >= 0.9 * st.tokens_generated, st
                    assert st.draft_steps < st.tokens_generated / 5, st
    finally:
        eng.close()


def test_with_flash_attention_the_text_is_plain_decodings_too():
    """Flash attention on: stock llama.cpp splits a one-token step's KV range by thread once
    the context passes 512 cells, and sums a several-token step's rows whole, so a row rounds
    differently alone and in a verification step; patch 0011 splits only when the heads leave
    threads idle. Pages 509 and 510 of the held-out split are two where an empty and a right
    draft changed a token without it (2 of 100 reads over 25 pages)."""
    from foveate.engine.core import Engine
    from foveate.instruments.pages import LAYOUTS, make_page

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2, flash_attn=True)
    try:
        for number in (509, 510):
            page = make_page("heldout", number, LAYOUTS["grid"])
            plain = eng.read(page.image, max_tokens=600)
            assert plain.stats.prompt_tokens + plain.stats.tokens_generated > 512 + 64
            for draft in (page.text, ""):
                assert eng.read(page.image, max_tokens=600, draft=draft).text == plain.text, number
    finally:
        eng.close()


@pytest.mark.parametrize("refresh", [1, 4])
def test_with_fixation_the_text_is_plain_fixation_decodings(refresh):
    """Each verification row gets its own selection, but a row after the first starts from
    the selection made before the step (warm start; between refreshes the kept focal list):
    its token counts only while every earlier row chose that same selection again
    (llama_fixation_rows_exact), and the sequence goes on from the last row kept. With R = 4
    rows up to the next refresh are exact and drafts are accepted; taking rows past a moved
    selection changes the text within a dozen characters on these pages, so this test fails
    without the rule."""
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=4096, threads=2, fixation=0.05,
                 fixation_refresh=refresh)
    try:
        for page in PAGES[:2]:
            plain = eng.read(load_page(page), max_tokens=600)
            for name, draft in list(_drafts(page).items())[:5]:
                res = eng.read(load_page(page), max_tokens=600, draft=draft)
                assert res.text == plain.text, (refresh, page.name, name)
                st = res.stats
                assert st.fixation_ratio == 0.05 and st.visual_tokens_selected > 0, st
                assert st.visual_tokens_selected < 0.2 * st.image_tokens, st   # it ran sparse
                if name == "truth" and refresh > 1:
                    assert st.draft_accepted >= 0.25 * st.tokens_generated, st
                    assert st.draft_unsettled > 0, st   # and the rule cut rows
    finally:
        eng.close()


@pytest.mark.parametrize("settings", [{}, {"merge": 0.84},
                                      {"fixation": 0.05, "fixation_refresh": 4}])
def test_in_a_batch_each_page_keeps_its_text(settings):
    """-np 2: each page's proposals ride in its own sequence's rows of the shared ubatch;
    every page's text is the plain batch's, whatever its draft."""
    from foveate import Reader
    from foveate.engine.batch import PageJob

    pages = PAGES[:4]
    with Reader(MODEL, MMPROJ, threads=2, parallel=2, n_ctx=8192, flash_attn=False,
                **settings) as r:
        plain = list(r.read_many([str(p) for p in pages], max_tokens=600))
        names = ["truth", "errors 5%", "other page", "empty"]
        jobs = [PageJob(str(p), draft=_drafts(p)[n]) for p, n in zip(pages, names)]
        drafted = list(r.read_many(jobs, max_tokens=600))
    for p, n, a, b in zip(pages, names, plain, drafted):
        assert b.text == a.text, (p.name, n, settings)
        assert b.stats.draft_source, (p.name, n)
    truth = drafted[0].stats
    assert truth.draft_accepted >= (0.25 if settings.get("fixation") else 0.9) * truth.tokens_generated


def test_what_a_draft_cannot_run_with_is_said_not_hidden():
    from foveate import Reader

    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2) as r:
        res = r.read(PAGES[0], max_tokens=40, draft="abc", temperature=0.7)
        assert res.stats.draft_source == "" and any("draft was not used" in w for w in res.warnings)
        with pytest.raises(ValueError, match="draft must be text"):
            r.read(PAGES[0], draft=b"bytes")
    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2) as r:
        res = r.read(PAGES[0], max_tokens=40, draft="abc", repeat_penalty=1.1)
        assert res.stats.draft_source == "" and any("draft was not used" in w for w in res.warnings)


def test_the_cli_reads_with_a_draft_file(tmp_path):
    import json

    base = [sys.executable, "-m", "foveate", "read", str(PAGES[0]), "-m", str(MODEL),
            "--mmproj", str(MMPROJ), "-t", "2", "-fa", "off", "--json"]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=300)
    draft = tmp_path / "draft.txt"
    draft.write_text(PAGES[0].with_suffix(".txt").read_text())
    r = subprocess.run(base + ["--draft", str(draft)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got, want = json.loads(r.stdout)[0], json.loads(plain.stdout)[0]
    assert got["text"] == want["text"] and got["stats"]["draft_source"] == "text"
    assert want["stats"]["draft_source"] is None
    # -np 2: the draft verified inside the batch (two pages, one drafted by the file)
    two = base[:5] + [str(PAGES[1])] + base[5:] + ["-np", "2"]
    r = subprocess.run(two + ["--draft", str(draft)], capture_output=True, text=True,
                       timeout=300)
    plain = subprocess.run(two, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got, want = json.loads(r.stdout), json.loads(plain.stdout)
    assert [g["text"] for g in got] == [w["text"] for w in want]
    assert got[0]["stats"]["draft_accepted"] > 0.9 * got[0]["stats"]["tokens_generated"]
