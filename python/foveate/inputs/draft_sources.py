"""Where a page's draft comes from (`--draft auto|pdf|ocr|self|none|PATH`).

- pdf: the page's PDF text layer (inputs/text_layer.py has the rule for a usable one);
- ocr: a classical OCR engine on the page as rendered (inputs/ocr_engine.py);
- self: no draft text, only the output's own repeats (engine/drafts.py looks them up);
- auto: the text layer when the page has a usable one, else the OCR engine when it is
  installed, else self. Quiet: the page's stats say which source ran (draft_source);
- the caller's text (a string, `--draft PATH`): used as given for every page; a document's
  whole text works, the matcher finds each page's place in it.
A draft never changes the text, only how many tokens each step of the model checks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .ocr_engine import OcrEngineMissing, missing, ocr_text
from .text_layer import read_text_layer

MODES = ("auto", "pdf", "ocr", "self", "none")


@dataclass(frozen=True)
class DraftText:
    text: str                 # "" = only the output's own n-grams
    source: str               # "pdf", "pdf-invisible", "ocr", "text" (the caller's), "self"
    seconds: float = 0.0      # what making it took (text layer, OCR engine)
    note: str = ""            # why an explicit source was not used (a warning on the page)


def check_mode(mode: str) -> None:
    """Refuse, before reading anything, what a run with this mode could not do."""
    if mode not in MODES:
        raise ValueError(f"unknown draft source {mode!r}: {', '.join(MODES)}")
    if mode == "ocr":
        why = missing()
        if why:
            raise OcrEngineMissing(why)


def page_draft(mode, doc, number: int, image) -> DraftText | None:
    """The draft of page `number` of `doc` (an inputs.documents.Document, None for a lone
    image), whose rendered picture is `image`, by `mode` (MODES), or `mode` itself when it is
    a DraftText (the caller's text for every page). None: no drafting."""
    if isinstance(mode, DraftText):
        return mode
    if mode in (None, "none"):
        return None
    check_mode(mode)
    if mode == "self":
        return DraftText("", "self")
    t0 = time.perf_counter()
    note = ""
    if mode in ("pdf", "auto"):
        if doc is not None and doc.kind == "pdf":
            layer = read_text_layer(doc, number)
            if layer.usable:
                return DraftText(layer.text, "pdf" if layer.kind == "drawn" else "pdf-invisible",
                                 time.perf_counter() - t0)
            note = f"the page's text layer is {layer.kind} ({layer.chars} characters)"
        else:
            note = "the page is not from a PDF"
        if mode == "pdf":
            return DraftText("", "self", time.perf_counter() - t0,
                             f"--draft pdf: {note}; drafted from the output's own repeats")
    if mode == "auto" and missing():
        return DraftText("", "self", time.perf_counter() - t0)
    return DraftText(ocr_text(image), "ocr", time.perf_counter() - t0)
