"""Documents in, documents out: PDFs, multi-page TIFFs, folders, stdin, page ranges, output
files per document with resume, exit codes, and the image fixes (transparency, EXIF)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, REPO, md_pages

READER = REPO / "models/reader"
MODEL = ["-m", str(READER / "foveate-reader-q8_0.gguf"),
         "--mmproj", str(READER / "foveate-reader-mmproj-f16.gguf"), "-t", "2"]
PAGES = sorted((DATA / "pages").glob("heldout-*.png"))[:3]
TRUTH = [p.with_suffix(".txt").read_text().strip() for p in PAGES]
CER_BOUND = 0.05    # the bundled Q8_0 reader's bar on held-out pages (models/reader/README.md)


def _images():
    from PIL import Image
    return [Image.open(p).convert("RGB") for p in PAGES]


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    """A 3-page PDF of generated pages, as a scanner writes one (one JPEG image per page)."""
    ims = _images()
    path = tmp_path_factory.mktemp("pdf") / "doc.pdf"
    ims[0].save(path, save_all=True, append_images=ims[1:], resolution=72)
    return path


def _run(*args, stdin: bytes | None = None, cwd=None):
    return subprocess.run([sys.executable, "-m", "foveate", "read", *map(str, args), *MODEL],
                          input=stdin, capture_output=True, cwd=cwd, timeout=600)


def _cer(a: str, b: str) -> float:
    from foveate.instruments.evaluate import cer
    return cer(a.strip(), b.strip())


# --- inputs ---------------------------------------------------------------------------------

def test_page_ranges():
    from foveate.errors import DocumentError
    from foveate.inputs.documents import parse_pages

    assert parse_pages(None, 4, "d.pdf") == [1, 2, 3, 4]
    assert parse_pages("1-2,4", 4, "d.pdf") == [1, 2, 4]
    assert parse_pages("3-", 5, "d.pdf") == [3, 4, 5]
    assert parse_pages("2,2,1", 3, "d.pdf") == [2, 1]
    with pytest.raises(DocumentError, match=r"d.pdf: --pages 4-6 is past the end: it has 5 pages"):
        parse_pages("4-6", 5, "d.pdf")
    for bad in ("x", "0", "3-1", "1-2-3"):
        with pytest.raises(ValueError):
            parse_pages(bad, 5, "d.pdf")


def test_scanned_pdf_pages_render_at_the_scan_resolution(pdf):
    from foveate.inputs.documents import RenderBudget, open_document

    doc = open_document(pdf)
    assert doc.n_pages == 3 and doc.kind == "pdf"
    # a budget far above the page: a scan still renders at its own pixels, not upscaled
    assert doc.page(2, RenderBudget(max_pixels=10_000_000)).size == (672, 476)
    # below the page: it is scaled down to fit
    w, h = doc.page(1, RenderBudget(max_pixels=100_000)).size
    assert w * h <= 100_000 * 1.02 and abs(w / h - 672 / 476) < 0.02
    # --dpi does not resample a scan; a vector page takes it
    assert doc.page(1, RenderBudget(dpi=300)).size == (672, 476)
    doc.close()


def test_vector_pdf_page_fits_the_budget():
    import pypdfium2 as pdfium

    from foveate.inputs.documents import RenderBudget, open_document

    blank = pdfium.PdfDocument.new()
    blank.new_page(612, 792)   # US letter, no image on it
    buf = io.BytesIO()
    blank.save(buf)
    doc = open_document(buf.getvalue())
    w, h = doc.page(1, RenderBudget(max_pixels=1_000_000)).size
    assert 0.97e6 < w * h <= 1.0e6 * 1.01
    assert doc.page(1, RenderBudget(dpi=144)).size == (1224, 1584)


def test_transparent_page_is_read_on_white(tmp_path):
    """Black text on a transparent background must not become black on black."""
    from PIL import Image

    from foveate.inputs.images import load_page

    src = Image.open(PAGES[0]).convert("L")
    rgba = Image.new("RGBA", src.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(src, lambda v: 255 - v))   # ink opaque black, paper transparent
    page = load_page(rgba)
    px = Image.frombytes("RGB", (page.width, page.height), page.rgb)
    assert px.getpixel((0, 0)) == (255, 255, 255)
    import numpy as np
    diff = np.abs(np.asarray(px.convert("L"), int) - np.asarray(src, int))
    assert diff.max() <= 2


def test_exif_orientation_is_applied():
    from PIL import Image

    from foveate.inputs.images import load_page

    src = Image.open(PAGES[0]).convert("RGB")
    rotated = src.transpose(Image.Transpose.ROTATE_90)   # stored sideways ...
    exif = Image.Exif()
    exif[0x0112] = 6                                     # ... and tagged "rotate 90 CW to view"
    buf = io.BytesIO()
    rotated.save(buf, format="JPEG", exif=exif, quality=95)
    page = load_page(buf.getvalue())
    assert (page.width, page.height) == src.size


def test_multipage_tiff_and_folder_inputs(tmp_path):
    from foveate.inputs.documents import expand_inputs, open_document

    ims = _images()
    ims[0].save(tmp_path / "scan.tiff", save_all=True, append_images=ims[1:])
    ims[0].save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("not a page")
    (tmp_path / "sub").mkdir()
    ims[1].save(tmp_path / "sub" / "c.webp")
    assert open_document(tmp_path / "scan.tiff").n_pages == 3
    flat = [Path(p).name for p in expand_inputs([str(tmp_path)])]
    assert flat == ["b.jpg", "scan.tiff"]
    deep = [Path(p).name for p in expand_inputs([str(tmp_path)], recursive=True)]
    assert deep == ["b.jpg", "scan.tiff", "c.webp"]


def test_bad_pdfs_are_named_and_the_run_goes_on(tmp_path, pdf):
    pypdf = pytest.importorskip("pypdf")
    w = pypdf.PdfWriter(clone_from=str(pdf))
    w.encrypt("s3cret")
    w.write(tmp_path / "locked.pdf")
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf\n")
    buf = io.BytesIO()
    pypdf.PdfWriter().write(buf)   # a valid PDF with no pages
    (tmp_path / "empty.pdf").write_bytes(buf.getvalue())
    r = _run(tmp_path / "locked.pdf", tmp_path / "garbage.pdf", tmp_path / "empty.pdf", pdf,
             "--pages", "1")
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "locked.pdf: the PDF is encrypted: give its password (--password)" in err
    assert "garbage.pdf: not a readable PDF" in err
    assert "empty.pdf: the PDF has no pages" in err
    assert "3 failed, 1 page read" in err
    assert _cer(r.stdout.decode(), TRUTH[0]) < CER_BOUND      # the good one was read
    assert "Traceback" not in err
    ok = _run(tmp_path / "locked.pdf", "--password", "s3cret", "--pages", "2")
    assert ok.returncode == 0, ok.stderr.decode()
    assert _cer(ok.stdout.decode(), TRUTH[1]) < CER_BOUND
    wrong = _run(tmp_path / "locked.pdf", "--password", "nope")
    assert wrong.returncode == 1 and b"wrong password" in wrong.stderr


def test_range_past_the_end_and_usage_errors(pdf):
    r = _run(pdf, "--pages", "2-5")
    assert r.returncode == 1
    assert b"doc.pdf: --pages 2-5 is past the end: it has 3 pages" in r.stderr
    r = _run(pdf, "--pages", "two")
    assert r.returncode == 2 and b"--pages takes page numbers" in r.stderr
    assert b"Traceback" not in r.stderr


# --- reading documents ----------------------------------------------------------------------

def test_read_document_yields_pages_in_order(pdf):
    from foveate import Reader

    with Reader(READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf",
                threads=2) as rd:
        res = list(rd.read_document(pdf, pages="3,1"))
    assert [(r.source, r.page, r.n_pages) for r in res] == [(str(pdf), 3, 3), (str(pdf), 1, 3)]
    assert _cer(res[0].text, TRUTH[2]) < CER_BOUND and _cer(res[1].text, TRUTH[0]) < CER_BOUND


@pytest.mark.parametrize("fmt", ["markdown", "text", "json", "jsonl"])
def test_pdf_to_each_format(pdf, tmp_path, fmt):
    r = _run(pdf, "-o", tmp_path, "--format", fmt, "--pages", "2-3")
    assert r.returncode == 0, r.stderr.decode()
    ext = {"markdown": ".md", "text": ".txt", "json": ".json", "jsonl": ".jsonl"}[fmt]
    out = (tmp_path / ("doc" + ext)).read_text()
    if fmt == "markdown":
        pages = md_pages(out)
    elif fmt == "text":   # "=== page N of M: SOURCE ===" above each page
        pages = {int(b.split()[0]): b.split("===\n", 1)[1].strip()
                 for b in out.split("=== page ")[1:]}
    elif fmt == "json":
        d = json.loads(out)
        assert d["schema"] == "foveate.document/1" and d["n_pages"] == 3
        assert d["settings"]["model"]["name"] == "foveate-reader-q8_0.gguf"
        p = d["pages"][0]
        assert p["image"] == {"width": 672, "height": 476} and p["wall_s"] > 0
        assert p["stats"]["image_tokens_kept"] == p["stats"]["image_tokens"] == 408
        pages = {p["page"]: p["text"] for p in d["pages"]}
    else:
        rows = [json.loads(ln) for ln in out.splitlines()]
        assert all(r["source"] == str(pdf) for r in rows)
        pages = {r["page"]: r["text"] for r in rows}
    assert sorted(pages) == [2, 3]
    assert _cer(pages[2], TRUTH[1]) < CER_BOUND and _cer(pages[3], TRUTH[2]) < CER_BOUND


def test_stdin_and_folder(tmp_path, pdf):
    r = _run("-", "--pages", "1", stdin=pdf.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    assert _cer(r.stdout.decode(), TRUTH[0]) < CER_BOUND
    folder = tmp_path / "in"
    folder.mkdir()
    for i, im in enumerate(_images()[:2]):
        im.save(folder / f"p{i}.png")
    r = _run(folder, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr.decode()
    for i in range(2):
        (text,) = md_pages((tmp_path / "out" / f"p{i}.md").read_text()).values()
        assert _cer(text, TRUTH[i]) < CER_BOUND


def test_resume_reads_only_the_remaining_pages(pdf, tmp_path):
    """A run interrupted after page 1 (its journal holds page 1 only, and a half-written
    line of page 2), rerun, reads pages 2-3 only; the output equals an uninterrupted run's."""
    full = tmp_path / "full"
    assert _run(pdf, "-o", full).returncode == 0
    part = tmp_path / "part"
    assert _run(pdf, "-o", part, "--pages", "1").returncode == 0
    journal = part / ".foveate" / "doc.pages.jsonl"
    lines = (full / ".foveate" / "doc.pages.jsonl").read_text().splitlines()
    journal.write_text(journal.read_text() + lines[2][: len(lines[2]) // 2])   # killed mid-write
    r = _run(pdf, "-o", part)
    assert r.returncode == 0, r.stderr.decode()
    assert b"1 of the pages asked for are already there (resume); 2 to read" in r.stderr
    assert (part / "doc.md").read_text() == (full / "doc.md").read_text()
    # nothing left: the rerun reads nothing and leaves the file as it is
    again = _run(pdf, "-o", part)
    assert again.returncode == 0 and b"3 of the pages asked for are already there" in again.stderr
    assert (part / "doc.md").read_text() == (full / "doc.md").read_text()


def test_changed_settings_are_refused_without_overwrite(pdf, tmp_path):
    assert _run(pdf, "-o", tmp_path, "--pages", "1").returncode == 0
    r = _run(pdf, "-o", tmp_path, "--pages", "1", "-n", "100")
    assert r.returncode == 2 and b"other settings (n_predict)" in r.stderr
    r = _run(pdf, "-o", tmp_path, "--pages", "1", "-n", "100", "--overwrite")
    assert r.returncode == 0


def test_cut_off_page_is_reported(tmp_path):
    r = _run(PAGES[0], "-n", "20")
    assert r.returncode == 0
    assert b"output cut off at the 20-token limit: raise -n" in r.stderr


def test_eval_reports_a_page_without_ground_truth(tmp_path):
    import shutil
    shutil.copy(PAGES[0], tmp_path / "a.png")
    shutil.copy(PAGES[0].with_suffix(".txt"), tmp_path / "a.txt")
    shutil.copy(PAGES[1], tmp_path / "b.png")
    r = subprocess.run([sys.executable, "-m", "foveate", "eval", str(tmp_path), *MODEL],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "b.png: no ground truth b.txt beside it; page skipped" in r.stderr
    assert "pages: 1" in r.stdout and "Traceback" not in r.stderr


def test_every_flag_says_its_default():
    """Each flag with a value shows a default (or says what it is) in --help."""
    import argparse

    from foveate.surface import cli

    seen = []
    real = argparse.ArgumentParser.parse_args

    def grab(self, *a, **k):
        seen.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            cli.main([])
    finally:
        argparse.ArgumentParser.parse_args = real
    top = seen[0]
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, p in subs.choices.items():
        text = p.format_help()
        for act in p._actions:
            if not act.option_strings or act.nargs == 0 or act.default is None and act.required:
                continue
            if not act.help:
                missing.append(f"{name} {act.option_strings[0]}: no help")
            elif act.default is not None and "default" not in p._get_formatter()._get_help_string(act):
                missing.append(f"{name} {act.option_strings[0]}: no default shown")
        assert text
    assert not missing, missing
    assert set(subs.choices) == {"read", "bench", "make-model", "pages", "eval", "calibrate", "serve",
                                 "info", "models"}


# --- found in review ------------------------------------------------------------------------

def test_truncated_tiff_is_one_failure_not_a_crash(tmp_path, pdf):
    ims = _images()
    ims[0].save(tmp_path / "full.tiff", save_all=True, append_images=ims[1:] * 2)
    data = (tmp_path / "full.tiff").read_bytes()
    (tmp_path / "cut.tiff").write_bytes(data[: len(data) // 2])
    r = _run(pdf, tmp_path / "cut.tiff", "--pages", "1")
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert "cut.tiff" in err and "corrupt" in err
    assert _cer(r.stdout.decode(), TRUTH[0]) < CER_BOUND   # the PDF was read


def test_same_file_names_in_two_folders_get_two_outputs(tmp_path):
    ims = _images()
    for d, im in (("x", ims[0]), ("y", ims[1])):
        (tmp_path / d).mkdir()
        im.save(tmp_path / d / "page.png")
    r = _run(tmp_path / "x", tmp_path / "y", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr.decode()
    outs = sorted(p.name for p in (tmp_path / "out").glob("*.md"))
    assert outs == ["x_page.md", "y_page.md"]     # not one file for both
    for name, truth in zip(outs, TRUTH[:2]):
        (text,) = md_pages((tmp_path / "out" / name).read_text()).values()
        assert _cer(text, truth) < CER_BOUND


def test_open_range_past_the_end_is_that_files_error(pdf, tmp_path):
    r = _run(pdf, "--pages", "5-")
    assert r.returncode == 1
    assert b"doc.pdf: --pages 5- is past the end: it has 3 pages" in r.stderr


def test_a_document_with_no_page_written_takes_new_settings(tmp_path):
    """A page too large for -c 1024 fails, so its journal holds no page; the rerun with a
    larger -c reads it (nothing was written with the old settings to stay consistent with)."""
    im = _images()[0]
    im.resize((im.width * 2, im.height * 2)).save(tmp_path / "big.png")
    r = _run(tmp_path / "big.png", "-o", tmp_path / "out", "-c", "1024")
    assert r.returncode == 1 and b"more than n_ctx=1024" in r.stderr, r.stderr.decode()
    journal = tmp_path / "out" / ".foveate" / "big.pages.jsonl"
    assert len(journal.read_text().splitlines()) == 1   # its header, no page
    r = _run(tmp_path / "big.png", "-o", tmp_path / "out", "-c", "8192")
    assert r.returncode == 0, r.stderr.decode()
    assert (tmp_path / "out" / "big.md").read_text().strip()
    # once a page is there, another setting is refused again
    r = _run(tmp_path / "big.png", "-o", tmp_path / "out", "-c", "8192", "-n", "100")
    assert r.returncode == 2 and b"other settings (n_predict)" in r.stderr


def test_another_document_of_the_same_name_is_not_resumed(pdf, tmp_path):
    assert _run(pdf, "-o", tmp_path / "out", "--pages", "1").returncode == 0
    other = tmp_path / "doc.pdf"
    ims = _images()
    ims[2].save(other, resolution=72)          # a different doc.pdf
    r = _run(other, "-o", tmp_path / "out")
    assert r.returncode == 2 and b"from another document of that name" in r.stderr


def test_colour_key_transparency_and_16_bit_scans():
    import numpy as np
    from PIL import Image

    from foveate.inputs.images import load_page

    src = Image.open(PAGES[0]).convert("L")
    keyed = src.point(lambda v: 0 if v > 128 else 40)        # paper stored as 0 (black), ink 40 ...
    buf = io.BytesIO()
    keyed.save(buf, format="PNG", transparency=0)            # ... and marked transparent
    page = load_page(buf.getvalue())
    px = np.asarray(Image.frombytes("RGB", (page.width, page.height), page.rgb).convert("L"))
    assert px[0, 0] == 255 and (px < 128).mean() > 0.02
    deep = Image.fromarray(np.asarray(src, np.uint16) * 257)   # 16-bit greyscale ("I;16")
    assert deep.mode.startswith("I")
    page = load_page(deep)
    px = np.asarray(Image.frombytes("RGB", (page.width, page.height), page.rgb).convert("L"), int)
    assert np.abs(px - np.asarray(src, int)).max() <= 1


def test_pages_applies_to_a_one_page_pdf(tmp_path):
    one = tmp_path / "one.pdf"
    _images()[0].save(one, resolution=72)
    r = _run(one, "--pages", "2")
    assert r.returncode == 1 and b"one.pdf: --pages 2 is past the end: it has 1 page" in r.stderr


def test_a_closed_pipe_ends_the_run_quietly(tmp_path):
    """`foveate read doc.pdf | head -1`: the reader of stdout leaves after one line; foveate
    stops without a traceback (before: BrokenPipeError), with SIGPIPE's status."""
    import subprocess
    import sys

    from conftest import REPO, md_pages  # noqa: F401

    pages = sorted((REPO / "tests/data/pages").glob("*.png"))[:4]
    p = subprocess.Popen([sys.executable, "-m", "foveate", "read", *map(str, pages), "-q",
                          "-m", str(REPO / "models/reader/foveate-reader-q8_0.gguf"),
                          "--mmproj", str(REPO / "models/reader/foveate-reader-mmproj-f16.gguf"),
                          "-t", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline()
    p.stdout.close()                       # as `head -1` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
