"""The server's web page in a real headless browser (Debian's chromium driven by playwright):
drop a 2-page PDF, wait for both pages' text, check it and the picture of where fixation
looked."""
from __future__ import annotations

import shutil

import pytest

from conftest import DATA

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

from test_server import _Server  # noqa: E402  (the same server the openai tests use)


def test_drop_a_pdf_and_read_it(tmp_path):
    from PIL import Image

    from foveate.instruments.evaluate import cer
    import shutil as _sh

    pages = sorted((DATA / "pages").glob("*.png"))[:2]
    pdf = tmp_path / "two-pages.pdf"
    ims = [Image.open(p).convert("RGB") for p in pages]
    ims[0].save(pdf, save_all=True, append_images=ims[1:], resolution=72)
    srv = _Server()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            page.goto(srv.url + "/")
            assert page.title() == "foveate"
            page.set_input_files("#file", str(pdf))
            page.wait_for_selector(".page[data-page='2']", timeout=120_000)
            page.wait_for_function("document.getElementById('status').textContent.includes('done')")
            texts = page.locator(".page .text").all_inner_texts()
            imgs = page.locator(".page img").count()
            status = page.locator("#status").inner_text()
            page.screenshot(path=str(tmp_path / "web.png"), full_page=True)
            _sh.copy(tmp_path / "web.png", "/tmp/foveate-web.png")
            browser.close()
        want = [r.text for r in srv.reader.read_document(pdf)]   # what the server's reader reads
    finally:
        srv.close()
    assert "read 2 of 2 pages of two-pages.pdf" in status
    assert len(texts) == 2 and imgs == 2          # each page with its heat map (fixation on)
    assert [t.strip() for t in texts] == [w.strip() for w in want]
    for text, p in zip(texts, pages):   # fixation 0.05 + merge 0.84 on the grid reader: its
        assert cer(text.strip(), p.with_suffix(".txt").read_text().strip()) < 0.25   # known miss
