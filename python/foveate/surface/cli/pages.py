"""`foveate pages`: synthetic pages (PNG) with their ground truth (TXT)."""
from __future__ import annotations

from pathlib import Path

from . import flags as F


def add_parser(sub) -> None:
    pg = sub.add_parser("pages", help="write synthetic pages (PNG) with ground truth (TXT)", formatter_class=F.HELP)
    pg.add_argument("out", help="output folder")
    pg.add_argument("--split", default="heldout", choices=["train", "heldout", "prose"],
                    help="heldout pages are never used in training; prose: real English text "
                         "(this Python's standard-library docstrings, instruments/prose_pages.py) "
                         "instead of the generator's words, pages 0 .. --count - 1")
    pg.add_argument("--start", type=int, default=0, help="first page index")
    pg.add_argument("--count", type=int, default=8, help="how many pages")
    pg.add_argument("--layout", default="grid", choices=["grid", "document"],
                    help="grid: lines fill the page (the bundled reader's format); document: "
                         "margins, line spacing, blank lower page (the layout reader's)")
    pg.add_argument("--rows", type=int, default=None,
                    help="lines per page (grid: 16; document: 6-12)")
    pg.add_argument("--cols", type=int, default=None, help="page width in cells (24)")
    pg.set_defaults(fn=cmd_pages)


def cmd_pages(a) -> int:
    from dataclasses import replace

    from ...instruments.pages import LAYOUTS, write_pages

    if a.split == "prose":
        from ...instruments.prose_pages import write_prose_pages

        if a.start or a.rows is not None or a.cols is not None:
            raise ValueError("--split prose writes pages 0 .. --count - 1 in a layout as it is "
                             "(no --start, --rows, --cols)")
        for p in write_prose_pages(Path(a.out), a.count, a.layout):
            print(p)
        return 0
    spec = LAYOUTS[a.layout]
    if a.rows is not None:   # a fixed line count
        spec = replace(spec, rows=a.rows, min_rows=0)
    if a.cols is not None:
        spec = replace(spec, cols=a.cols)
    for p in write_pages(Path(a.out), a.split, a.start, a.count, spec):
        print(p)
    return 0
