"""Pictures of where fixation looked (`foveate read PAGE --fixation 0.05 --trace OUT`).

- `.gif`: the reading path. One frame per decode step (steps are grouped when a page takes
  more than MAX_FRAMES): the page with the image tokens the focal layers selected for that
  step outlined in orange, the previous steps' fading behind them, and below the page the
  text read so far with the step's token in orange.
- `.png`: a heat map: each image token tinted by how many steps attended it, merged-away
  tokens greyed, a legend underneath.

Pillow only (its FreeType default font, Pillow >= 10.1), so no plotting library is needed.
"""
from __future__ import annotations

from pathlib import Path

MAX_FRAMES = 160
ORANGE = (255, 120, 0)
GREY = (120, 120, 120)
INK = (30, 30, 30)
PAPER = (250, 250, 247)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:   # Pillow < 10.1: the bitmap font
        return ImageFont.load_default()


def _scale_for(page) -> float:
    """Pictures are drawn 900-1200 px wide: small pages larger, so cells and text stay
    readable; large scans smaller, so a GIF of 160 frames stays in memory."""
    w = max(page.width, 1)
    return 900 / w if w < 900 else (1200 / w if w > 1200 else 1.0)


def _base(page, scale: float):
    from PIL import Image

    img = page.convert("RGB")
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return img


def _merged_away(trace) -> set[int]:
    if trace.kept is None:
        return set()
    nx, ny = trace.grid
    return set(range(nx * ny)) - set(trace.kept)


def _grey_out(img, trace, scale: float):
    """Merged-away tokens: a grey wash with diagonal hatching."""
    from PIL import Image, ImageDraw

    away = _merged_away(trace)
    if not away:
        return img
    over = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    for g in away:
        x0, y0, x1, y1 = (v * scale for v in trace.box(g))
        d.rectangle((x0, y0, x1, y1), fill=GREY + (70,))
        d.line((x0, y1, x1, y0), fill=GREY + (120,), width=1)
    return Image.alpha_composite(img.convert("RGBA"), over).convert("RGB")


def _wrap(text: str, font, width: int) -> list[str]:
    """Lines of `text` (its own newlines kept) that fit `width` pixels."""
    lines = []
    for para in text.split("\n"):
        cur = ""
        for ch in para:
            if font.getlength(cur + ch) > width and cur:
                lines.append(cur)
                cur = ch
            else:
                cur += ch
        lines.append(cur)
    return lines


def heatmap(trace, page, path: str | Path) -> Path:
    from PIL import Image, ImageDraw

    scale = _scale_for(page)
    img = _grey_out(_base(page, scale), trace, scale)
    counts = trace.counts()
    top = max(counts) or 1
    over = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    for g, c in enumerate(counts):
        if c:
            t = c / top
            x0, y0, x1, y1 = (v * scale for v in trace.box(g))
            # low counts pale yellow, high counts deep orange-red
            col = (255, int(210 - 150 * t), int(80 - 80 * t))
            d.rectangle((x0, y0, x1, y1), fill=col + (int(60 + 150 * t),))
    img = Image.alpha_composite(img.convert("RGBA"), over).convert("RGB")
    return _with_caption(img, _heat_caption(trace, top), path)


def _heat_caption(trace, top: int) -> list[str]:
    nx, ny = trace.grid
    n_img = len(trace.kept) if trace.kept is not None else nx * ny
    sel = [len(s.cells) for s in trace.steps if s.cells]
    per = f"{sum(sel) / len(sel):.0f}" if sel else "0"
    lines = [f"fixation {trace.ratio:g}: {per} of {n_img} image tokens selected per step, "
             f"{len(trace.steps)} steps",
             f"colour: how often a token was attended (deepest: {top} of {len(trace.steps)} steps)"]
    if trace.kept is not None:
        lines.append(f"grey: merged away before prefill ({nx * ny - n_img} of {nx * ny})")
    return lines


def _with_caption(img, lines: list[str], path) -> Path:
    from PIL import Image, ImageDraw

    font = _font(15)
    h = 12 + 22 * len(lines)
    out = Image.new("RGB", (img.width, img.height + h), PAPER)
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    for i, ln in enumerate(lines):
        d.text((10, img.height + 8 + 22 * i), ln, font=font, fill=INK)
    if hasattr(path, "write"):   # a file object (the server's data URI)
        out.save(path, format="PNG")
        return path
    path = Path(path)
    out.save(path)
    return path


def reading_gif(trace, page, path: str | Path, frame_ms: int = 110) -> Path:
    from PIL import Image, ImageDraw

    scale = _scale_for(page)
    base = _grey_out(_base(page, scale), trace, scale)
    font = _font(17)
    panel_h = 7 * 24 + 40   # seven lines of text, then the step counter
    group = max(1, -(-len(trace.steps) // MAX_FRAMES))
    frames, text, history = [], "", []
    steps = trace.steps
    for start in range(0, len(steps), group):
        chunk = steps[start:start + group]
        before = text
        text += "".join(s.text for s in chunk)
        cells = sorted({g for s in chunk for g in s.cells})
        history.append(cells)
        over = Image.new("RGBA", base.size, (0, 0, 0, 0))
        d = ImageDraw.Draw(over)
        for age, old in enumerate(reversed(history[-5:-1]), start=1):   # the last steps, fading
            for g in old:
                x0, y0, x1, y1 = (v * scale for v in trace.box(g))
                d.rectangle((x0, y0, x1, y1), fill=ORANGE + (max(10, 70 - 15 * age),))
        for g in cells:
            x0, y0, x1, y1 = (v * scale for v in trace.box(g))
            d.rectangle((x0, y0, x1, y1), fill=ORANGE + (90,), outline=ORANGE + (255,), width=2)
        frame = Image.alpha_composite(base.convert("RGBA"), over).convert("RGB")
        canvas = Image.new("RGB", (frame.width, frame.height + panel_h), PAPER)
        canvas.paste(frame, (0, 0))
        dd = ImageDraw.Draw(canvas)
        dd.line((0, frame.height, frame.width, frame.height), fill=GREY, width=1)
        _draw_text(dd, before, text[len(before):], font, frame.width - 20, 10, frame.height + 8, 7)
        status = (f"step {min(start + group, len(steps))}/{len(steps)}  "
                  f"{len(cells)} image tokens attended" if cells else
                  f"step {min(start + group, len(steps))}/{len(steps)}  (first token: dense prefill)")
        dd.text((10, canvas.height - 22), status, font=_font(13), fill=GREY)
        frames.append(canvas)
    if not frames:
        raise ValueError("the trace has no steps (nothing was decoded)")
    # rest on the finished page before the loop starts again
    durations = [frame_ms] * (len(frames) - 1) + [2500]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=True)
    return path


def _draw_text(d, before: str, new: str, font, width: int, x: int, y: int, max_lines: int) -> None:
    """The text read so far (its last max_lines lines), the newest token in orange."""
    lines = _wrap(before + new, font, width)[-max_lines:]
    # where the new text starts: count back from the end
    n_new = len(new)
    for i, ln in enumerate(lines):
        yy = y + 24 * i
        tail = len("".join(lines[i + 1:])) + (len(lines) - 1 - i)   # chars after this line
        split = max(0, len(ln) - max(0, n_new - tail))
        d.text((x, yy), ln[:split], font=font, fill=INK)
        if split < len(ln):
            d.text((x + font.getlength(ln[:split]), yy), ln[split:], font=font, fill=ORANGE)


def save(trace, path: str | Path, page=None) -> Path:
    """By the file's suffix: .gif (reading path) or .png (heat map). page: a PIL image
    (default: the page the trace was read from)."""
    page = page if page is not None else trace.page_image()
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return reading_gif(trace, page, path)
    if suffix == ".png":
        return heatmap(trace, page, path)
    raise ValueError(f"--trace writes .gif (the reading path) or .png (a heat map), not {suffix!r}")
