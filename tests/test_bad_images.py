"""Damaged images are foveate errors (ImageError, naming the file and page), never Pillow's
own exceptions: a seeded fuzz of corrupted PNG / JPEG / WebP / TIFF / BMP / PPM / GIF bytes
through both decode paths, and a folder holding one damaged file read page by page."""
from __future__ import annotations

import io
import random
import subprocess
import sys
import warnings

import pytest
from PIL import Image

from conftest import REPO

FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "PPM", "GIF")


def _encoded() -> dict[str, bytes]:
    src = Image.open(REPO / "models/reader/sample-page.png").convert("RGB").resize((96, 80))
    out = {}
    for fmt in FORMATS:
        b = io.BytesIO()
        (src.convert("P") if fmt == "GIF" else src).save(b, fmt)
        out[fmt] = b.getvalue()
    b = io.BytesIO()
    src.save(b, "TIFF", save_all=True, append_images=[src, src])
    out["TIFF (3 pages)"] = b.getvalue()
    return out


def _damaged(data: bytes, rng: random.Random, kind: int) -> bytes:
    b = bytearray(data)
    if kind == 0:                       # truncated
        return bytes(b[:rng.randrange(8, len(b))])
    if kind == 1:                       # bytes flipped anywhere
        for _ in range(rng.randrange(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:                       # the header damaged
        j = rng.randrange(8, min(64, len(b)))
        b[j:j + 4] = rng.randbytes(4)
        return bytes(b)
    return bytes(b[:len(b) // 2]) + rng.randbytes(64)   # a tail of garbage


@pytest.mark.parametrize("seed", [0, 1])
def test_only_foveate_errors_escape_the_decoders(seed):
    """Before, 52 of 320 damaged files escaped as OSError or ValueError (WebP headers,
    truncated JPEG/BMP, a PPM with a bad header)."""
    from foveate.errors import FoveateError
    from foveate.inputs.documents import open_document
    from foveate.inputs.images import load_page

    rng = random.Random(seed)
    escaped, n = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Pillow's own warnings about damaged files
        for fmt, data in _encoded().items():
            for i in range(40):
                bad = _damaged(data, rng, i % 4)
                n += 1
                for path in ("image", "document"):
                    try:
                        if path == "image":
                            load_page(bad)
                        else:
                            doc = open_document(bad)
                            for p in range(1, doc.n_pages + 1):
                                load_page(doc.page(p))
                    except FoveateError as e:
                        assert "<bytes>" in str(e), str(e)   # the message names the input
                    except Exception as e:   # noqa: BLE001 - what this test looks for
                        escaped.append(f"{fmt} #{i} via {path}: {type(e).__name__}: {e}")
    assert n == 320 and not escaped, escaped


def test_a_damaged_file_in_a_folder_is_one_failure_and_the_rest_is_read(tmp_path):
    """`foveate read folder/ -o out/` with a truncated WebP beside a good page: the good page
    is written, the WebP is one line of the summary (ImageError), exit 1, no traceback."""
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a-good.png").write_bytes((REPO / "models/reader/sample-page.png").read_bytes())
    webp = _encoded()["WEBP"]
    (folder / "b-bad.webp").write_bytes(webp[:len(webp) // 3])
    r = subprocess.run([sys.executable, "-m", "foveate", "read", str(folder), "-o", str(tmp_path / "out"),
                        "-m", str(REPO / "models/reader/foveate-reader-q8_0.gguf"),
                        "--mmproj", str(REPO / "models/reader/foveate-reader-mmproj-f16.gguf"),
                        "-t", "2", "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "b-bad.webp" in r.stderr and "ImageError" in r.stderr
    assert "1 failed, 1 page read" in r.stderr
    assert (tmp_path / "out" / "a-good.md").read_text().strip()
