"""Turn what a user passes as an image (path, bytes, PIL image) into checked RGB pixels.

Images are decoded with Pillow here, never by the C side, so a broken file raises
ImageError instead of reaching stb_image.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError

MIN_SIDE = 8                 # smaller than one vision patch: nothing to read
MAX_PIXELS = 64_000_000      # 8000 x 8000; larger pages are far beyond any OCR projector


@dataclass
class Page:
    name: str        # file path, or "<bytes>" / "<PIL image>", used in messages
    width: int
    height: int
    rgb: bytes       # width * height * 3 bytes


def load_page(image, max_pixels: int = MAX_PIXELS) -> Page:
    from PIL import Image

    if isinstance(image, Image.Image):
        # a document page carries its name (documents.PAGE_NAME; not imported: documents
        # imports this module)
        name, img = image.info.get("foveate.page", "<PIL image>"), image
        _check_size(name, *img.size, max_pixels)
    else:
        if isinstance(image, (bytes, bytearray, memoryview)):
            name, data = "<bytes>", bytes(image)
        elif isinstance(image, (str, os.PathLike)):
            name, data = str(image), read_file(Path(image))
        else:
            raise ImageError(f"unsupported image type {type(image).__name__}: "
                             f"pass a path, bytes or a PIL image")
        if not data:
            raise ImageError(f"image is empty (0 bytes): {name}")
        if b"%PDF-" in data[:1024]:   # as inputs/documents.py recognizes a PDF
            raise ImageError(f"{name} is a PDF, a document: read it with Reader.read_document "
                             f"(or `foveate read`); Reader.read takes one image")
        img = open_image(data, name)
        _check_size(name, *img.size, max_pixels)
    try:
        rgb = to_rgb(img)
    except MemoryError:
        raise
    except Exception as e:   # noqa: BLE001 - any decoder failure on damaged pixel data
        raise ImageError(f"image data is corrupt: {name}: {_why(e)}") from None
    return Page(name=name, width=rgb.width, height=rgb.height, rgb=rgb.tobytes())


def open_image(data: bytes, name: str, alternatives: str = ""):
    """Pillow's image of `data`, or an ImageError naming `name` (alternatives: what else the
    caller would have taken, for the message)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"not an image Pillow can open{alternatives}: {name}") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image is too large: {name}: {e}") from None
    except MemoryError:
        raise
    except Exception as e:   # noqa: BLE001 - Pillow's decoders raise OSError, ValueError,
        # SyntaxError, EOFError, struct.error... on a damaged header (a fuzz test keeps count)
        raise ImageError(f"image data is corrupt or truncated: {name}: {_why(e)}") from None


def _why(e: Exception) -> str:
    """A decoder's complaint, one line (some say nothing but their type)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def read_file(p: Path, what: str = "image") -> bytes:
    """The bytes of a user's file, or an ImageError naming it: missing, not a file, unreadable."""
    if not p.exists():
        raise ImageError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ImageError(f"{what} path is not a file: {p}")
    try:
        return p.read_bytes()
    except OSError as e:
        raise ImageError(f"{what} file is not readable: {p}: {e.strerror}") from None


def to_rgb(img):
    """The page as it is seen: EXIF orientation applied (phone photos, scanners), and any
    transparency composited on white paper (converting RGBA straight to RGB turns black text
    on a transparent background into black on black)."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):   # 16-bit scans: scale, do not clip
        import numpy as np
        a = np.asarray(img, dtype=np.uint32)
        img = Image.fromarray((a >> 8 if a.max() > 255 else a).astype(np.uint8), "L")
    if "transparency" in img.info and img.mode in ("P", "L", "RGB"):   # tRNS colour key
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return img.convert("RGB")


def _check_size(name: str, w: int, h: int, max_pixels: int) -> None:
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"image is too small ({w}x{h}; at least {MIN_SIDE}x{MIN_SIDE} "
                         f"pixels needed): {name}")
    if w * h > max_pixels:
        raise ImageError(f"image is too large ({w}x{h} = {w * h} pixels; the limit is "
                         f"{max_pixels}): {name}")
