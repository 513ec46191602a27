"""The bundled readers say so, in one line on stderr, when given a page they cannot read."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from conftest import DATA, REPO

READER = REPO / "models/reader"
ARGS = ["-m", str(READER / "foveate-reader-q8_0.gguf"),
        "--mmproj", str(READER / "foveate-reader-mmproj-f16.gguf"), "-t", "2"]


def _read(tmp_path, png_bytes: bytes | None = None, path=None, model_args=ARGS):
    if path is None:
        path = tmp_path / "page.png"
        path.write_bytes(png_bytes)
    return subprocess.run([sys.executable, "-m", "foveate", "read", str(path), *model_args],
                          capture_output=True, text=True, timeout=300)


def _png(img) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG")
    return b.getvalue()


def _notes(r):
    return [ln for ln in r.stderr.splitlines() if "Supported models" in ln]


def test_generated_page_reads_without_a_note(tmp_path):
    r = _read(tmp_path, path=READER / "sample-page.png")
    assert r.returncode == 0 and r.stdout.strip()
    assert _notes(r) == []


@pytest.mark.parametrize("case", ["hello", "scaled-2x", "photo-like"])
def test_unlike_training_pages_gets_one_line(tmp_path, case):
    from PIL import Image
    import numpy as np

    if case == "hello":
        data = (DATA / "page-hello.png").read_bytes()
    elif case == "scaled-2x":
        im = Image.open(READER / "sample-page.png")
        data = _png(im.resize((im.width * 2, im.height * 2)))
    else:
        rng = np.random.default_rng(0)
        data = _png(Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)))
    r = _read(tmp_path, data)
    assert r.returncode == 0
    notes = _notes(r)
    assert len(notes) == 1, r.stderr
    assert "unlike foveate-reader's training pages" in notes[0]


def test_blank_page_of_the_right_size_reads_nothing_and_says_so(tmp_path):
    from PIL import Image

    r = _read(tmp_path, _png(Image.new("RGB", (672, 476), "white")))
    assert r.returncode == 0
    notes = _notes(r)
    assert len(notes) == 1 and "read almost nothing" in notes[0], r.stderr


def test_other_models_get_no_note(models, tmp_path):
    """A random-weight model reads noise too, but it is not a bundled reader: no note."""
    r = _read(tmp_path, path=DATA / "page-hello.png",
              model_args=["-m", str(models["q8_0"]), "--mmproj", str(models["mmproj"]),
                          "-t", "2", "-n", "8", "-c", "1024"])
    assert r.returncode == 0
    assert _notes(r) == []


def test_notes_are_in_the_api_result():
    from foveate import Reader

    with Reader(READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf",
                threads=2) as rd:
        assert rd.read(DATA / "page-hello.png").warnings
        assert rd.read(READER / "sample-page.png").warnings == []


def test_each_reader_names_the_other_readers_pages(tmp_path):
    """A document-layout page (672x728) passes the size check of both readers but only the
    layout reader reads it: the grid reader says so and names the layout reader; the layout
    reader reads it without a note, and names the grid reader on a grid page."""
    doc = sorted((DATA / "pages-document").glob("*.png"))[0]
    r = _read(tmp_path, path=doc)
    notes = _notes(r)
    assert r.returncode == 0 and len(notes) == 1, r.stderr
    assert "document-layout page" in notes[0] and "foveate-reader-layout-q8_0.gguf" in notes[0]
    layout = ["-m", str(READER / "foveate-reader-layout-q8_0.gguf"),
              "--mmproj", str(READER / "foveate-reader-mmproj-f16.gguf"), "-t", "2"]
    r = _read(tmp_path, path=doc, model_args=layout)
    assert r.returncode == 0 and _notes(r) == [], r.stderr
    r = _read(tmp_path, path=READER / "sample-page.png", model_args=layout)
    notes = _notes(r)
    assert len(notes) == 1 and "foveate-reader-q8_0.gguf" in notes[0], r.stderr
