"""A classical OCR engine's reading of a page, as a draft (engine/drafts.py verifies it).

Tesseract 5 (Debian/Ubuntu: `apt install tesseract-ocr tesseract-ocr-eng`; macOS: `brew
install tesseract`), chosen over RapidOCR's ONNX engine by measurement (docs/benchmarks.md,
"Drafts: the OCR engine"): CER 3.5-5% against 34-64% on generated pages (RapidOCR's bundled
recogniser is trained for Chinese and drops Latin spaces) and 0.06% against 22% on rendered
born-digital prose, faster on this 2-core CPU, and ~15 MB of system packages against ~500 MB
of wheels (onnxruntime, OpenCV).

The engine runs as its own command on the page as the model will see it (the rendered image,
as PNG on stdin), one page block (--psm 6: automatic layout analysis, --psm 3, lost the
generated pages entirely: CER > 0.6) with OMP_THREAD_LIMIT=1: Tesseract's OpenMP build
oversubscribes a small machine (6.3 s a letter page at 150 dpi on 2 cores, 1.0 s with the
limit). That environment is why it is called directly and not through pytesseract, whose
calls inherit ours (and setting it in ours would cap ggml's own OpenMP threads).
A draft only has to be close: the model keeps its own tokens wherever the draft differs.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess

from ..errors import FoveateError

INSTALL = ("--draft ocr needs Tesseract on PATH: apt install tesseract-ocr tesseract-ocr-eng "
           "(macOS: brew install tesseract)")


class OcrEngineMissing(FoveateError):
    """--draft ocr, and the OCR engine is not installed."""


def missing() -> str | None:
    """Why the OCR engine cannot run here (None: it can)."""
    return None if shutil.which("tesseract") else INSTALL


def ocr_text(image, lang: str = "eng", timeout_s: float = 120.0) -> str:
    """The engine's text of a PIL image, lines joined by "\\n" (blank lines dropped)."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise OcrEngineMissing(INSTALL)
    png = io.BytesIO()
    image.convert("RGB").save(png, "PNG", compress_level=1)
    try:
        run = subprocess.run([exe, "stdin", "stdout", "-l", lang, "--psm", "6"],
                             input=png.getvalue(), capture_output=True, timeout=timeout_s,
                             env=dict(os.environ, OMP_THREAD_LIMIT="1"))
    except subprocess.TimeoutExpired:
        raise FoveateError(f"the OCR engine gave up on the page after {timeout_s:.0f} s") from None
    if run.returncode != 0:
        why = run.stderr.decode("utf-8", "replace").strip().splitlines()
        raise FoveateError(f"the OCR engine failed on the page: {why[-1] if why else run.returncode}")
    text = run.stdout.decode("utf-8", "replace")
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
