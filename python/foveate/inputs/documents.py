"""Documents: what `foveate read INPUT...` and `Reader.read_document` take, as pages.

An input is an image, a multi-page image (TIFF, animated formats: one page per frame), a PDF,
a folder of those (sorted; `recursive` descends) or `-` (one image or PDF on stdin). Pages are
numbered from 1, as in every PDF tool; `parse_pages("1-3,7,10-", n)` selects them.

PDF pages are rendered with pypdfium2 (PDFium wheels for every platform, no system poppler).
Resolution policy (`RenderBudget`): a page that is one full-page image (a scan) renders at the
scan's own resolution, so no pixel is invented or lost; any other page renders at `dpi` when
given, else at the size that fits the projector's image-token budget. Either way the result
is kept within [min_pixels, max_pixels] of that budget.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import DocumentError, ImageError
from .images import open_image, read_file

PDF_MAGIC = b"%PDF-"
PAGE_NAME = "foveate.page"        # PIL info key: the document and page an image came from


@dataclass(frozen=True)
class RenderBudget:
    """Pixels a page may have on the way into the projector (0 = no bound)."""
    max_pixels: int = 0
    min_pixels: int = 0
    dpi: float | None = None          # PDF pages that are not scans: this resolution


@dataclass
class Document:
    """One input: its name (the path, or "<stdin>"), its pages, and how to get each one."""
    name: str
    n_pages: int
    kind: str                         # "image", "multipage", "pdf"
    _open: object = None              # kind-specific handle (PIL image, PdfDocument)
    _data: bytes | None = None

    def page(self, number: int, budget: RenderBudget = RenderBudget()):
        """Page `number` (1-based) as a PIL image, sized by `budget` (PDF pages)."""
        if not 1 <= number <= self.n_pages:
            raise DocumentError(f"{self.name}: no page {number} (it has {self.n_pages})")
        if self.kind == "pdf":
            img = _render_pdf_page(self, number, budget)
        else:
            img = self._open
            try:
                if self.kind == "multipage":
                    img.seek(number - 1)
                    img = img.copy()
                else:
                    img.load()
            except MemoryError:
                raise
            except Exception as e:   # noqa: BLE001 - Pillow's decoders raise many types
                raise DocumentError(f"{self.name}: page {number} is corrupt ({e})") from None
        # what later messages call it (images.load_page), not "<PIL image>"
        img.info[PAGE_NAME] = self.name if self.n_pages == 1 else f"{self.name} page {number}"
        return img

    def close(self) -> None:
        if self.kind == "pdf" and self._open is not None:
            self._open.close()
        self._open = None


def image_suffixes() -> set[str]:
    """File suffixes Pillow opens, plus .pdf: what a folder input takes."""
    from PIL import Image

    return {s.lower() for s in Image.registered_extensions()} | {".pdf"}


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[str]:
    """Each input, folders replaced by their documents in sorted order. A missing input stays
    in the list (opening it raises the error for that input alone)."""
    out, suffixes = [], None
    for item in inputs:
        p = Path(item)
        if item != "-" and p.is_dir():
            suffixes = suffixes or image_suffixes()
            walk = p.rglob("*") if recursive else p.iterdir()
            files = sorted(f for f in walk if f.is_file() and f.suffix.lower() in suffixes)
            if not files:   # left in: opening it reports the problem for this input alone
                out.append(item)
                continue
            out += [str(f) for f in files]
        else:
            out.append(item)
    return out


def open_document(source, password: str | None = None, name: str | None = None,
                  recursive_hint: bool = False) -> Document:
    """Open an input: a path, "-" (stdin), bytes, or a PIL image."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return _image_document(source, name or "<PIL image>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "<bytes>"
    elif source == "-":
        data, name = sys.stdin.buffer.read(), name or "<stdin>"
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        name = name or str(p)
        if p.is_dir():
            raise DocumentError(f"folder {p} holds no image or PDF"
                                + ("" if recursive_hint else " (--recursive descends into subfolders)"))
        data = read_file(p, "input")
    else:
        raise ImageError(f"unsupported input type {type(source).__name__}: pass a path, bytes "
                         f"or a PIL image")
    if not data:
        raise ImageError(f"file is empty (0 bytes): {name}")
    if PDF_MAGIC in data[:1024]:   # PDF readers accept junk before the header
        return _pdf_document(data, name, password)
    return _image_document(open_image(data, name, ", nor a PDF"), name)


def _image_document(img, name: str) -> Document:
    import warnings

    if getattr(img, "format", None) == "MPO":   # a camera JPEG with a preview: one photo
        n = 1
    else:
        try:
            with warnings.catch_warnings():   # Pillow's own warnings about a damaged file
                warnings.simplefilter("ignore")
                n = getattr(img, "n_frames", 1) or 1
        except Exception as e:   # a truncated multi-page file (TIFF): Pillow cannot count it
            raise DocumentError(f"{name}: the image file is corrupt or truncated ({e})") from None
    return Document(name=name, n_pages=n, kind="multipage" if n > 1 else "image", _open=img)


def _pdf_document(data: bytes, name: str, password: str | None) -> Document:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as e:
        msg = str(e)
        if _empty_page_tree(data):   # PDFium refuses a document with no pages, with no error code
            raise DocumentError(f"{name}: the PDF has no pages") from None
        if "password" in msg.lower():
            raise DocumentError(f"{name}: the PDF is encrypted: "
                                + ("wrong password" if password else "give its password (--password)")) from None
        raise DocumentError(f"{name}: not a readable PDF ({msg})") from None
    n = len(pdf)
    if n == 0:
        pdf.close()
        raise DocumentError(f"{name}: the PDF has no pages")
    return Document(name=name, n_pages=n, kind="pdf", _open=pdf, _data=data)


def _empty_page_tree(data: bytes) -> bool:
    """A page tree that says it holds no page, and no page object anywhere."""
    import re

    return (re.search(rb"/Type\s*/Pages\b", data) is not None
            and re.search(rb"/Count\s+0\b", data) is not None
            and re.search(rb"/Type\s*/Page\b(?!s)", data) is None)


def _scan_pixels(page) -> tuple[int, int] | None:
    """(w, h) of the page's one image if it covers the page (a scan), else None."""
    import pypdfium2.raw as raw

    objs = list(page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=2))
    if len(objs) != 1:
        return None
    w_pt, h_pt = page.get_size()
    left, bottom, right, top = objs[0].get_bounds()
    # bounds are in unrotated page space; a /Rotate 90 page swaps width and height
    if (right - left) * (top - bottom) < 0.9 * w_pt * h_pt:
        return None
    try:
        return tuple(objs[0].get_px_size())
    except Exception:   # an image PDFium cannot size: render like any other page
        return None


def render_scale(w_pt: float, h_pt: float, scan_px: tuple[int, int] | None,
                 budget: RenderBudget) -> float:
    """Pixels per PDF point (72 per inch) for a page of w_pt x h_pt points."""
    if scan_px is not None:   # the scan's own pixel density, whatever its orientation
        scale = math.sqrt(scan_px[0] * scan_px[1] / (w_pt * h_pt))
    elif budget.dpi:
        scale = budget.dpi / 72.0
    elif budget.max_pixels:
        scale = math.sqrt(budget.max_pixels / (w_pt * h_pt))
    else:
        scale = 150 / 72.0
    area = w_pt * h_pt * scale * scale
    if budget.max_pixels and area > budget.max_pixels:
        scale = math.sqrt(budget.max_pixels / (w_pt * h_pt))
    if budget.min_pixels and area < budget.min_pixels:
        scale = math.sqrt(budget.min_pixels / (w_pt * h_pt))
    return scale


def _render_pdf_page(doc: Document, number: int, budget: RenderBudget):
    try:
        page = doc._open[number - 1]
        w_pt, h_pt = page.get_size()
        if w_pt <= 0 or h_pt <= 0:
            raise DocumentError(f"{doc.name}: page {number} has no area ({w_pt} x {h_pt} pt)")
        scale = render_scale(w_pt, h_pt, _scan_pixels(page), budget)
        img = page.render(scale=scale).to_pil().copy()   # its own pixels: the PDF may close first
        page.close()
    except DocumentError:
        raise
    except MemoryError:
        raise
    except Exception as e:   # noqa: BLE001 - PdfiumError, and whatever a broken page raises
        raise DocumentError(f"{doc.name}: page {number} cannot be rendered ({e})") from None
    return img


def parse_pages(spec: str | None, n_pages: int, name: str, check_only: bool = False) -> list[int]:
    """`--pages` as page numbers: "1-3,7,10-" (1-based; "10-" runs to the end). None: all.
    A page past the end is an error naming the file and its page count."""
    if spec is None or spec.strip() in ("", "all"):
        return list(range(1, n_pages + 1))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                first = int(a) if a.strip() else 1
                last = int(b) if b.strip() else n_pages
            else:
                first = last = int(part)
        except ValueError:
            raise ValueError(f"--pages takes page numbers and ranges like 1-3,7,10-, "
                             f"not {spec!r}") from None
        if first > n_pages or last > n_pages:
            raise DocumentError(f"{name}: --pages {part} is past the end: it has {n_pages} "
                                f"page{'s' if n_pages != 1 else ''}")
        if first < 1 or last < first:
            raise ValueError(f"--pages: {part!r} is not a range of pages (they count from 1)")
        if not check_only:
            seen = set(out)
            out += [p for p in range(first, last + 1) if p not in seen]
    return out
