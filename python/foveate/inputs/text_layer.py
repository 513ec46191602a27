"""A PDF page's text layer, as a draft of the page's text (engine/drafts.py verifies it).

What a page's text layer is, by this rule (`read_text_layer`):
- "empty": fewer than MIN_CHARS visible characters (a scan with no OCR layer, a blank page).
- "garbage": fewer than MIN_READABLE of its characters are letters, digits, punctuation or
  symbols: fonts without a Unicode map come out as private-use codes, control codes or
  U+FFFD, and nothing the model writes would match them.
- "invisible": at least half its characters are drawn with render mode 3 (invisible), as
  OCR tools (ocrmypdf, scanners' software) lay another engine's reading over a scan.
- "drawn": the page's own text (born-digital: the text is what the page shows).
A drawn or invisible layer is used as a draft; an empty or garbage one is not. An invisible
layer is another OCR engine's reading, often of a sharper scan than the page we render, and it
costs nothing to read; since drafted tokens are only kept where the model agrees, a wrong
layer costs speed, never text. The kind is in the page's stats (draft_source "pdf" or
"pdf-invisible").
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from ..errors import DocumentError

MIN_CHARS = 8            # fewer visible characters than this: no text layer worth drafting from
MIN_READABLE = 0.9       # share of letters, digits, punctuation and symbols below which: garbage
INVISIBLE_MODE = 3       # PDF text render mode 3: neither fill nor stroke (an OCR layer)


@dataclass(frozen=True)
class TextLayer:
    text: str           # in PDFium's reading order, lines joined by "\n"
    kind: str           # "drawn", "invisible", "empty", "garbage"
    chars: int          # characters that are not whitespace
    readable: float     # their share that are letters, digits, punctuation or symbols
    invisible: float    # their share drawn with render mode 3

    @property
    def usable(self) -> bool:
        return self.kind in ("drawn", "invisible")


def _readable(ch: str) -> bool:
    return ch != "\ufffd" and unicodedata.category(ch)[0] in "LNPS"


def read_text_layer(doc, number: int) -> TextLayer:
    """Page `number` (1-based) of a PDF Document's text layer, classified by the rule above."""
    import pypdfium2.raw as raw

    if doc.kind != "pdf":
        return TextLayer("", "empty", 0, 0.0, 0.0)
    if not 1 <= number <= doc.n_pages:
        raise DocumentError(f"{doc.name}: no page {number} (it has {doc.n_pages})")
    try:
        page = doc._open[number - 1]
        tp = page.get_textpage()
        try:
            text = tp.get_text_range()
            n = tp.count_chars()
            drawn_by = invisible = 0
            for i in range(n):   # the render mode of the text object that draws each char
                obj = raw.FPDFText_GetTextObject(tp.raw, i)   # none: a space PDFium inferred
                if obj:
                    drawn_by += 1
                    invisible += raw.FPDFTextObj_GetTextRenderMode(obj) == INVISIBLE_MODE
        finally:
            tp.close()
            page.close()
    except Exception as e:   # noqa: BLE001 - PdfiumError and whatever a broken page raises
        raise DocumentError(f"{doc.name}: page {number}'s text layer cannot be read ({e})") from None
    # PDFium joins a word hyphenated at a line's end and marks the join (U+FFFE, or 0x02 in
    # older builds): the page shows a hyphen and a line break there
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\ufffe", "-\n").replace("\x02", "-\n")
    text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    return classify(text, invisible / drawn_by if drawn_by else 0.0)


def classify(text: str, invisible: float) -> TextLayer:
    """The rule above, on a layer's text and the share of its characters drawn invisibly."""
    solid = [c for c in text if not c.isspace()]
    chars = len(solid)
    readable = sum(map(_readable, solid)) / chars if chars else 0.0
    inv = invisible
    if chars < MIN_CHARS:
        kind = "empty"
    elif readable < MIN_READABLE:
        kind = "garbage"
    elif inv >= 0.5:
        kind = "invisible"
    else:
        kind = "drawn"
    return TextLayer(text, kind, chars, readable, inv)
