"""Where drafts come from (inputs/draft_sources.py): a PDF page's text layer, by the rule in
inputs/text_layer.py, and Tesseract on the rendered page; `--draft auto` picks per page. The
text stays plain greedy decoding's (flash attention off: the same kernels per row)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"
HAVE_TESSERACT = shutil.which("tesseract") is not None
needs_tesseract = pytest.mark.skipif(not HAVE_TESSERACT, reason="Tesseract not installed "
                                     "(apt install tesseract-ocr tesseract-ocr-eng; .ci/run does)")


def _pages(n=3, start=3000, layout="grid"):
    """Held-out pages in the layout the bundled q8_0 reader was trained on (grid)."""
    from foveate.instruments.pages import LAYOUTS, make_page

    return [make_page("heldout", start + i, LAYOUTS[layout]) for i in range(n)]


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory):
    from foveate.instruments.pages_pdf import pages_pdf

    d = tmp_path_factory.mktemp("pdfs")
    pages = _pages()
    return pages, {layer: pages_pdf(pages, d / f"{layer}.pdf", layer)
                   for layer in ("drawn", "invisible", "none")}


def test_the_text_layer_rule(pdfs, tmp_path):
    import numpy as np

    from foveate.inputs.documents import RenderBudget, open_document
    from foveate.inputs.text_layer import classify, read_text_layer

    from foveate.instruments.pages_pdf import pages_pdf

    pages, files = pdfs
    more = _pages(2, layout="document")   # margins, line spacing: the text still lines up
    files = dict(files, **{f"{k} document": pages_pdf(more, tmp_path / f"{k}.pdf", k)
                           for k in ("drawn", "invisible")})
    for layer, kind in (("drawn", "drawn"), ("invisible", "invisible"), ("none", "empty"),
                        ("drawn document", "drawn"), ("invisible document", "invisible")):
        doc = open_document(files[layer])
        try:
            for n, p in enumerate(more if "document" in layer else pages, 1):
                tl = read_text_layer(doc, n)
                assert tl.kind == kind, (layer, n, tl)
                assert tl.usable == (kind != "empty")
                if tl.usable:
                    assert tl.text == p.text, (layer, n)
                # the PDF shows the generated page pixel for pixel at 72 dpi
                img = doc.page(n, RenderBudget(dpi=72))
                assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(p.image))
        finally:
            doc.close()
    # what a font without a Unicode map gives: private-use codes, U+FFFD, control codes
    assert classify("".join(chr(0xE000 + i) for i in range(40)), 0.0).kind == "garbage"
    assert classify("\ufffd\x03\x04" * 10 + "abc", 0.0).kind == "garbage"
    assert classify("ab c", 0.0).kind == "empty"
    assert classify("Total 12.50 EUR, paid.", 0.0).kind == "drawn"
    assert classify("Total 12.50 EUR, paid.", 0.9).kind == "invisible"


def _read(args, timeout=300):
    base = [sys.executable, "-m", "foveate", "read", "-m", str(MODEL), "--mmproj", str(MMPROJ),
            "-t", "2", "-fa", "off", "--json", "-q", "--dpi", "72", "-n", "400"]
    r = subprocess.run(base + args, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def test_auto_drafts_pdf_pages_from_their_text_layer_and_scans_by_ocr(pdfs):
    _, files = pdfs
    plain, _ = _read([str(files["drawn"])])
    expect = {"drawn": "pdf", "invisible": "pdf-invisible",
              "none": "ocr" if HAVE_TESSERACT else "self"}
    for layer, source in expect.items():
        got, err = _read([str(files[layer]), "--draft", "auto"])
        assert "Traceback" not in err and len(got) == len(plain) == 3
        for g, p in zip(got, plain):
            st = g["stats"]
            assert g["text"] == p["text"], (layer, g["page"])
            assert st["draft_source"].split("+")[0] == source, (layer, st)
            assert not g["warnings"], g["warnings"]   # auto is quiet: the stats say
            if source.startswith("pdf"):              # the page's own text: taken nearly whole
                assert st["draft_accepted"] >= 0.9 * st["tokens_generated"], st
                assert st["draft_steps"] < st["tokens_generated"] / 5, st
            if source == "ocr":                       # a close draft, and its time counted
                assert st["draft_accepted"] >= 0.5 * st["tokens_generated"], st
                assert st["draft_ms"] > 0


def test_draft_pdf_without_a_layer_says_so_and_reads(pdfs, tmp_path):
    _, files = pdfs
    got, err = _read([str(files["none"]), "--pages", "1", "--draft", "pdf"])
    assert got[0]["stats"]["draft_source"] in ("self", "none")
    assert any("text layer is empty" in w for w in got[0]["warnings"])
    png = tmp_path / "page.png"
    _pages(1)[0].image.save(png)
    got, _ = _read([str(png), "--draft", "pdf"])
    assert any("not from a PDF" in w for w in got[0]["warnings"])


def test_a_missing_ocr_engine_is_one_line_and_auto_falls_back(pdfs, monkeypatch, capsys):
    import foveate.inputs.ocr_engine as ocr
    from foveate.surface.cli import main

    _, files = pdfs
    monkeypatch.setattr(ocr.shutil, "which", lambda name, *a, **k: None)
    base = ["read", "-m", str(MODEL), "--mmproj", str(MMPROJ), "-t", "2", "-q", "--json",
            "--dpi", "72", "--pages", "1", str(files["none"])]
    monkeypatch.setattr(sys, "argv", ["foveate"] + base + ["--draft", "ocr"])
    assert main() == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "apt install tesseract-ocr" in err, err
    monkeypatch.setattr(sys, "argv", ["foveate"] + base + ["--draft", "auto"])
    assert main() == 0
    got = json.loads(capsys.readouterr().out)
    assert got[0]["stats"]["draft_source"] in ("self", "none") and not got[0]["warnings"]


@needs_tesseract
def test_the_ocr_engine_reads_generated_pages_closely():
    from foveate.inputs.ocr_engine import ocr_text
    from foveate.instruments.evaluate import cer

    for p in _pages(4, start=3100):
        got = ocr_text(p.image)
        assert cer(got, p.text) < 0.15, (p.index, got)


def test_read_document_refuses_an_unknown_source():
    from foveate import Reader

    with Reader(MODEL, MMPROJ, n_ctx=2048, threads=2) as r:
        with pytest.raises(ValueError, match="unknown draft source"):
            list(r.read_document(REPO / "models/reader/sample-page.png", draft="tesseract"))


def test_the_server_takes_drafts(pdfs):
    """/v1/ocr: `draft` (a source) or `draft_text`; chat completions: the `draft` extension.
    Bad values are 400s naming the field; a batching server (-np 2) verifies chat drafts in
    its batches, with the same text."""
    import httpx

    from foveate import Reader
    from test_server import KEY, _messages, _Server, _uri

    pages, files = pdfs
    h = {"Authorization": f"Bearer {KEY}"}
    srv = _Server(Reader(MODEL, MMPROJ, threads=2, flash_attn=False), api_key=KEY)
    try:
        pdf = files["drawn"].read_bytes()

        def ocr(**data):
            return httpx.post(srv.url + "/v1/ocr", files={"file": ("doc.pdf", pdf)}, data=data,
                              headers=h, timeout=120)
        plain, auto = ocr(pages="1-2"), ocr(pages="1-2", draft="auto")
        assert plain.status_code == auto.status_code == 200, auto.text
        for p, a in zip(plain.json()["pages"], auto.json()["pages"]):
            assert a["text"] == p["text"] and a["stats"]["draft_source"] == "pdf"
            assert p["stats"]["draft_source"] is None
        mine = ocr(pages="1", draft_text=pages[0].text).json()["pages"][0]
        assert mine["stats"]["draft_source"] == "text" and mine["stats"]["draft_accepted"] > 100
        for data, words in (({"draft": "tesseract"}, "draft must be one of"),
                            ({"draft": "pdf", "draft_text": "x"}, "not both")):
            bad = ocr(**data)
            assert bad.status_code == 400 and words in bad.json()["error"]["message"], bad.text
            assert bad.json()["error"]["param"] == "draft"

        img = io_png(pages[0].image)
        _chat_draft_is_plain(srv, img, pages[0].text)
        body = {"messages": _messages(_uri(img)), "draft": 42}
        bad = httpx.post(srv.url + "/v1/chat/completions", json=body, headers=h, timeout=60)
        assert bad.status_code == 400 and "draft" in bad.text
    finally:
        srv.close()
    # a batching server (-np 2): the draft rides in the page's sequence (engine/batch.py)
    srv = _Server(Reader(MODEL, MMPROJ, threads=2, parallel=2, n_ctx=8192, flash_attn=False),
                  api_key=KEY, parallel=2)
    try:
        _chat_draft_is_plain(srv, img, pages[0].text)
    finally:
        srv.close()


def _chat_draft_is_plain(srv, img: bytes, draft: str) -> None:
    """A chat completion with the `draft` extension reads what one without it reads, and
    the right draft was taken."""
    from test_server import _messages, _uri

    cl = srv.client()
    want = cl.chat.completions.create(model="foveate-reader", max_tokens=400,
                                      messages=_messages(_uri(img)))
    got = cl.chat.completions.create(model="foveate-reader", max_tokens=400,
                                     messages=_messages(_uri(img)), extra_body={"draft": draft})
    assert got.choices[0].message.content == want.choices[0].message.content
    st = got.model_extra["foveate"]
    assert st["draft_source"] == "text" and st["draft_accepted"] > 100, st


def io_png(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
