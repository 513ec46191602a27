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
    assert m.propose([100]) == (d[1:5], "text")            # in step with the draft
    m.advance(4, 4, "text")                                 # all taken: k doubles
    assert m.k == 8 and m.propose([100, 101, 102, 103, 104, 105]) == (d[6:14], "text")
    m.advance(2, 8, "text")                                 # the model left the draft ...
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


def test_what_a_draft_cannot_run_with_is_said_not_hidden():
    from foveate import Reader

    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2) as r:
        res = r.read(PAGES[0], max_tokens=40, draft="abc", temperature=0.7)
        assert res.stats.draft_source == "" and any("draft was not used" in w for w in res.warnings)
        with pytest.raises(ValueError, match="draft must be text"):
            r.read(PAGES[0], draft=b"bytes")
    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2, fixation=0.05) as r:
        res = r.read(PAGES[0], max_tokens=40, draft="abc")
        assert any("fixation" in w for w in res.warnings)


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
    bad = subprocess.run(base + ["--draft", str(draft), "-np", "2"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "--draft reads one page at a time" in bad.stderr
