"""Generated pages as a PDF with a text layer, to test and measure drafts from text layers
(inputs/text_layer.py) the way a user's PDFs give them.

Each page is the generated page's picture, one PDF point per pixel (render at 72 dpi to get
the picture back pixel for pixel), plus a text layer of its lines (DejaVu Sans Mono, sized so
a character advances one 28-pt cell, so each character's box lies over its glyph):
- "invisible": render mode 3, over the picture: a scan with an OCR layer (ocrmypdf's kind);
- "drawn": render mode 0 (fill), under the picture, which covers it: the rule sees the text a
  born-digital page draws; the picture keeps the glyphs the bundled readers were trained on;
- "none": the picture only (a plain scan).
`born_digital_pdf` writes the other kind: text only, in DejaVu Sans at a document's size, for
measuring OCR engines on a rendered born-digital page.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

from .pages import CELL, Page, font_path

LAYERS = ("invisible", "drawn", "none")
MONO_ADVANCE = 0.6021     # DejaVu Sans Mono's advance width, in em (1233 / 2048)


def _load_font(pdf, path: Path):
    import pypdfium2.raw as raw

    data = path.read_bytes()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    font = raw.FPDFText_LoadFont(pdf.raw, buf, len(data), raw.FPDF_FONT_TRUETYPE, True)
    if not font:
        raise RuntimeError(f"PDFium could not load the font {path}")
    return font


def _text_obj(pdf, font, size: float, text: str, x: float, y: float, mode: int, sx: float = 1.0):
    import pypdfium2.raw as raw

    obj = raw.FPDFPageObj_CreateTextObj(pdf.raw, font, size)
    utf16 = (text + "\0").encode("utf-16-le")   # PDFium takes NUL-terminated UTF-16
    raw.FPDFText_SetText(obj, ctypes.cast(ctypes.c_char_p(utf16), ctypes.POINTER(raw.FPDF_WCHAR)))
    raw.FPDFTextObj_SetTextRenderMode(obj, mode)
    raw.FPDFPageObj_Transform(obj, sx, 0, 0, 1, x, y)
    return obj


def pages_pdf(pages: list[Page], path: str | Path, layer: str = "invisible") -> Path:
    """Write `pages` (instruments.pages.Page, with `.at` their placement) as one PDF."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
    pdf = pdfium.PdfDocument.new()
    font = _load_font(pdf, font_path()) if layer != "none" else None
    # a glyph 0.8 cell high, widened to advance one 28-pt cell: lines do not overlap, so
    # PDFium's text page keeps them apart
    size = 0.8 * CELL
    widen = CELL / (size * MONO_ADVANCE)
    for p in pages:
        w, h = p.image.size
        page = pdf.new_page(w, h)
        texts = []
        if font is not None:
            for i, line in enumerate(p.text.split("\n")):
                if not line:
                    continue
                row = p.at.top + i * (1 + p.at.spacing)
                baseline = h - (row + 1) * CELL + 0.2 * CELL
                mode = raw.FPDF_TEXTRENDERMODE_FILL if layer == "drawn" else raw.FPDF_TEXTRENDERMODE_INVISIBLE
                texts.append(_text_obj(pdf, font, size, line, p.at.left * CELL, baseline, mode,
                                       widen))
        if layer == "drawn":      # the text first: the picture covers it
            for t in texts:
                raw.FPDFPage_InsertObject(page.raw, t)
        img = pdfium.PdfImage.new(pdf)
        bitmap = pdfium.PdfBitmap.from_pil(p.image.convert("RGB"))
        img.set_bitmap(bitmap)
        img.set_matrix(pdfium.PdfMatrix().scale(w, h))
        page.insert_obj(img)
        if layer == "invisible":
            for t in texts:
                raw.FPDFPage_InsertObject(page.raw, t)
        page.gen_content()
        bitmap.close()
        page.close()
    return _save(pdf, path)


def born_digital_pdf(texts: list[str], path: str | Path, size_pt: float = 11.0) -> Path:
    """Each text as a US-letter page of left-aligned lines in DejaVu Sans, drawn as text."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    pdf = pdfium.PdfDocument.new()
    font = _load_font(pdf, font_path().with_name("DejaVuSans.ttf"))
    for text in texts:
        page = pdf.new_page(612, 792)
        y = 792 - 72
        for line in text.split("\n"):
            y -= size_pt * 1.4
            if line:
                t = _text_obj(pdf, font, size_pt, line, 72, y, raw.FPDF_TEXTRENDERMODE_FILL)
                raw.FPDFPage_InsertObject(page.raw, t)
        page.gen_content()
        page.close()
    return _save(pdf, path)


def _save(pdf, path) -> Path:
    path = Path(path)
    pdf.save(path)
    pdf.close()
    return path
