"""Every bad input raises a foveate exception naming the file and the problem; the
reader stays usable afterwards."""
import os
import struct
import zlib

import pytest
from PIL import Image

from foveate import ContextError, ImageError, ModelError, ProjectorError, Reader


def _reader(model, mmproj, **kw):
    return Reader(model, mmproj, n_ctx=kw.pop("n_ctx", 1024), threads=2, **kw)


def test_missing_model(models, tmp_path):
    p = tmp_path / "nope.gguf"
    with pytest.raises(ModelError, match=f"model file not found: {p}"):
        _reader(p, models["mmproj"])


def test_model_path_is_a_directory(models, tmp_path):
    with pytest.raises(ModelError, match=f"not a file: {tmp_path}"):
        _reader(tmp_path, models["mmproj"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_model(models, tmp_path):
    p = tmp_path / "locked.gguf"
    p.write_bytes(models["f16"].read_bytes()[:64])
    p.chmod(0)
    with pytest.raises(ModelError, match="not readable"):
        _reader(p, models["mmproj"])


def test_not_gguf(models, tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelError, match=f"not a GGUF file.*{p}"):
        _reader(p, models["mmproj"])


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_gguf(models, tmp_path, keep):
    data = models["f16"].read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelError, match=f"truncated.*{p}"):
        _reader(p, models["mmproj"])


def test_truncated_header(models, tmp_path):
    p = tmp_path / "head.gguf"
    p.write_bytes(models["f16"].read_bytes()[:200])
    with pytest.raises(ModelError, match=f"truncated.*{p}"):
        _reader(p, models["mmproj"])


def test_truncated_projector(models, tmp_path):
    data = models["mmproj"].read_bytes()
    p = tmp_path / "cut-mmproj.gguf"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProjectorError, match=f"truncated.*{p}"):
        _reader(models["f16"], p)


def test_projector_of_another_model(models):
    with pytest.raises(ProjectorError, match=r"cannot be used with model.*mismatch.*n_embd = 256.*128") as e:
        _reader(models["f16"], models["mmproj_other"])
    assert str(models["mmproj_other"]) in str(e.value)


def test_model_and_projector_swapped(models):
    with pytest.raises(ModelError, match="is an image projector"):
        _reader(models["mmproj"], models["f16"])
    with pytest.raises(ProjectorError, match="not an mmproj"):
        _reader(models["f16"], models["q8_0"])


def _png_header_only(w, h):
    """A small PNG file whose header claims w x h pixels (its pixel data is cut short)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_bad_images_then_reader_still_works(reader, page, tmp_path):
    cases = []
    p = tmp_path / "missing.png"
    cases.append((p, f"image file not found: {p}"))
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    cases.append((p, f"empty \\(0 bytes\\): {p}"))
    p = tmp_path / "text.png"
    p.write_text("hello")
    cases.append((p, f"not an image Pillow can open: {p}"))
    p = tmp_path / "one.png"
    Image.new("RGB", (1, 1)).save(p)
    cases.append((p, f"too small \\(1x1.*{p}"))
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    cases.append((p, f"too large.*{p}"))
    p = tmp_path / "corrupt.png"
    p.write_bytes(page.read_bytes()[:300])
    cases.append((p, f"corrupt.*{p}"))
    cases.append((b"", "empty \\(0 bytes\\): <bytes>"))
    cases.append((12345, "unsupported image type int"))
    for img, msg in cases:
        with pytest.raises(ImageError, match=msg):
            reader.read(img, max_tokens=2)
    assert reader.read(page, max_tokens=3).stats.image_tokens == 128


def test_context_smaller_than_image(models, page):
    big = Image.new("RGB", (1120, 560), "white")  # 40 x 20 = 800 image tokens
    with _reader(models["q8_0"], models["mmproj"], n_ctx=512) as r:
        with pytest.raises(ContextError, match=r"<PIL image> needs 800 image tokens.*n_ctx=512"):
            r.read(big, max_tokens=4)
        assert r.read(page, max_tokens=2).stats.image_tokens == 128  # fits: still usable


def test_generation_stops_at_n_ctx(models, page):
    with _reader(models["f16"], models["mmproj"], n_ctx=256) as r:
        res = r.read(page, max_tokens=1000)
    assert res.stats.stop_reason in ("n_ctx", "eos")
    # the KV cache holds the prompt and every generated token but the last (sampled from
    # the final logits, never decoded): generation stops cleanly when the cache is full
    assert res.stats.stop_reason == "n_ctx"
    assert res.stats.prompt_tokens + res.stats.tokens_generated == 256 + 1


def test_cli_reports_error_and_exit_code(models, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    out = subprocess.run([sys.executable, "-m", "foveate", "read", str(bad), "-m", str(models["q8_0"]),
                          "--mmproj", str(models["mmproj"]), "-t", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert f"ImageError: not an image Pillow can open, nor a PDF: {bad}" in out.stderr
    assert "Traceback" not in out.stderr
