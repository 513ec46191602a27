"""Synthetic document pages with ground truth, for training and testing reading models.

A page is a grid of character cells, one cell per visual token of a Qwen2-VL style
projector (28 px = 2x2 patches of 14 px), so every glyph sits inside exactly one token.
Text is left-aligned, word-wrapped lines of words, numbers and punctuation; the ground
truth is the lines joined by "\\n" (no trailing spaces).

Deterministic: page `i` of split `s` is a pure function of (s, i). The "train" and
"heldout" splits draw from disjoint seed streams, so training never sees a held-out page.

Two layouts (`LAYOUTS`): "grid" (the bundled reader's format: lines fill the page width
from the first column, one blank row below) and "document" (text narrower than the page, at a
random left and top margin, single or double line spacing, on a fixed-height page whose lower
part stays blank: most tokens are background, as on real pages). A layout only moves the
lines' cells (`Placement`); the text and ground truth are made the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CELL = 28                       # px per character cell = one merged visual token
SPLITS = {"train": 1, "heldout": 2}
PUNCT = ".,;:!?'\"()-/%&+*#@$=<>[]"
CHARSET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + PUNCT + " ")

# A small English word list (common words) so lines look like text, mixed with random
# letter strings so the model must read glyphs rather than guess words.
WORDS = """the of and to in is was for on that with as by at from this be are or an it
which not have has one all were they their but more can had two its new first may also
been other after time most into only over such many some any would these than years
between where then data page line text read model image token value table number order
state water light power field point level group order paper report system process
result method change figure section letter record total market price energy company
report north south east west city river house street school office course market
measure sample source signal region series memory vision layer cache batch score
""".split()


@dataclass(frozen=True)
class PageSpec:
    cols: int = 24              # cells per line (page width = cols * 28 px)
    rows: int = 16              # lines
    margin: int = 1             # blank cell rows below the text (page height = (rows + margin) * 28 px):
                                # the visible end of the text is what tells a reader to stop
    font_px: int = 30
    min_fill: float = 0.6       # each line fills at least this fraction of the width
    # "document" layout knobs (the defaults are the grid layout and draw no random numbers)
    min_rows: int = 0           # lines drawn uniformly from [min_rows, rows]; 0: always `rows`
    text_cols: int = 0          # line width in cells; 0: the page width `cols`
    page_rows: int = 0          # page height in cells; 0: rows + margin
    max_left: int = 0           # left margin drawn from [0, max_left] cells
    max_top: int = 0            # top margin drawn from [0, max_top] cells
    spacings: tuple = (0,)      # blank rows between lines, one drawn per page

    def __post_init__(self):
        if not self.spacings or min(self.spacings) < 0:
            raise ValueError(f"spacings must be non-negative blank-row counts, got {self.spacings!r}")
        if not 0 <= self.min_rows <= self.rows:
            raise ValueError(f"min_rows {self.min_rows} must be in [0, rows {self.rows}]")
        if self.line_cols + self.max_left > self.cols:
            raise ValueError(f"lines of {self.line_cols} cells + max_left {self.max_left} > cols {self.cols}")
        if self.max_top + self.rows + (self.rows - 1) * max(self.spacings) + 1 > self.height:
            raise ValueError(f"{self.rows} lines with spacing {max(self.spacings)} and top margin "
                             f"{self.max_top} leave no blank row on a {self.height}-row page")

    @property
    def line_cols(self) -> int:
        return self.text_cols or self.cols

    @property
    def height(self) -> int:
        """Page height in cells."""
        return self.page_rows or self.rows + self.margin


LAYOUTS = {
    "grid": PageSpec(),
    "document": PageSpec(rows=12, min_rows=6, text_cols=20, page_rows=26, max_left=4, max_top=2,
                         spacings=(0, 1)),
}


@dataclass(frozen=True)
class Placement:
    """Where the lines sit: cell (row top + i * (1 + spacing), column left + j) holds line i's
    character j."""
    left: int = 0
    top: int = 0
    spacing: int = 0


def place(rng: np.random.Generator, spec: PageSpec) -> Placement:
    if spec.max_left == spec.max_top == 0 and tuple(spec.spacings) == (0,):
        return Placement()
    return Placement(int(rng.integers(0, spec.max_left + 1)), int(rng.integers(0, spec.max_top + 1)),
                     int(spec.spacings[rng.integers(len(spec.spacings))]))


@dataclass
class Page:
    image: "object"             # PIL.Image.Image (RGB)
    text: str                   # ground truth, lines joined by "\n"
    split: str
    index: int
    at: Placement = Placement()  # where the lines sit


def font_path() -> Path:
    """DejaVu Sans Mono as shipped by matplotlib (present on a fresh machine with pip)."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("page generation needs matplotlib for its DejaVu Sans Mono font: "
                          "pip install matplotlib") from e
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"


def _rng(split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([SPLITS[split], index]))


def _word(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.45:
        w = WORDS[rng.integers(len(WORDS))]
        if rng.random() < 0.2:
            w = w.capitalize()
    elif kind < 0.75:
        letters = CHARSET[:52]
        w = "".join(letters[rng.integers(len(letters))] for _ in range(rng.integers(1, 8)))
    elif kind < 0.9:
        w = str(rng.integers(0, 10 ** rng.integers(1, 6)))
        if rng.random() < 0.3:
            w += "." + str(rng.integers(0, 100))
    else:
        w = "".join(PUNCT[rng.integers(len(PUNCT))] for _ in range(rng.integers(1, 3)))
    if rng.random() < 0.15:
        w += PUNCT[rng.integers(len(PUNCT))]
    return w


def line_count(rng: np.random.Generator, spec: PageSpec) -> int:
    """A page's number of lines: drawn from [min_rows, rows] in the document layout."""
    return int(rng.integers(spec.min_rows, spec.rows + 1)) if spec.min_rows else spec.rows


def make_lines(rng: np.random.Generator, spec: PageSpec) -> list[str]:
    lines = []
    width = spec.line_cols
    for _ in range(line_count(rng, spec)):
        target = int(rng.integers(int(spec.min_fill * width), width + 1))
        line = ""
        while True:
            w = _word(rng)[:width]
            cand = (line + " " + w) if line else w
            if len(cand) > target:
                break
            line = cand
        if not line:
            line = w[:target]
        lines.append(line)
    return lines


def render(lines: list[str], spec: PageSpec, at: Placement = Placement()):
    """Draw each character centred in its 28x28 cell: glyphs align with the token grid."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path()), spec.font_px)
    img = Image.new("RGB", (spec.cols * CELL, spec.height * CELL), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        r = at.top + i * (1 + at.spacing)
        for j, ch in enumerate(line):
            if ch != " ":
                c = at.left + j
                draw.text((c * CELL + CELL / 2, r * CELL + CELL / 2), ch, fill="black",
                          font=font, anchor="mm")
    return img


def make_page(split: str, index: int, spec: PageSpec = PageSpec()) -> Page:
    rng = _rng(split, index)
    lines = make_lines(rng, spec)
    at = place(rng, spec)
    return Page(render(lines, spec, at), "\n".join(lines), split, index, at)


def write_pages(out_dir: Path, split: str, start: int, count: int,
                spec: PageSpec = PageSpec()) -> list[Path]:
    """Write `{split}-{i:05d}.png` and `.txt` (ground truth) for i in [start, start+count)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [save_page(out_dir, make_page(split, i, spec)) for i in range(start, start + count)]


def save_page(out_dir: Path, p: Page) -> Path:
    """`{split}-{index:05d}.png` and its ground truth `.txt` in out_dir; the PNG's path."""
    png = out_dir / f"{p.split}-{p.index:05d}.png"
    p.image.save(png, optimize=True)
    png.with_suffix(".txt").write_text(p.text + "\n")
    return png
