"""Held-out pages of real English prose (issue 35): the readers' own two layouts, filled not with
the page generator's word stream but with the documentation that ships with the Python running
foveate — the docstrings of a fixed list of standard-library modules, in a fixed order.

The text is that CPython's (the same on every machine with the same Python version; the pages
name it); characters the readers cannot draw (backquotes, underscores, braces ...) become
spaces, runs of spaces one, and the stream is word-wrapped to each page's line width. Page i
takes the lines after page i-1's, so no two pages repeat text; its placement (margins, line
spacing, line count in the document layout) comes from the generator's own random stream for
split "prose", so only the words differ from generated pages.
"""
from __future__ import annotations

import importlib
import inspect
import platform
import textwrap
from pathlib import Path

import numpy as np

from .pages import CHARSET, LAYOUTS, Page, PageSpec, line_count, place, render, save_page

# stdlib modules whose documentation is mostly prose (not tables of names)
MODULES = ("textwrap", "argparse", "logging", "unittest", "json", "csv", "fractions", "heapq",
           "bisect", "shlex", "difflib", "calendar", "string", "functools", "contextlib",
           "tempfile", "shutil", "zipfile", "tarfile", "pathlib", "subprocess", "threading",
           "queue", "sched", "pickle", "copy", "pprint", "random", "statistics", "decimal")
DRAWABLE = set(CHARSET)


def source() -> str:
    return f"CPython {platform.python_version()} standard-library docstrings ({', '.join(MODULES)})"


def prose_stream() -> list[str]:
    """The prose as words: each module's docstring, then its public classes' and functions'
    (in name order), characters the readers cannot draw as spaces."""
    parts = []
    for name in MODULES:
        mod = importlib.import_module(name)
        parts.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                parts.append(inspect.getdoc(obj) or "")
    text = " ".join(parts)
    text = "".join(c if c in DRAWABLE else " " for c in text)
    return text.split()


def make_prose_pages(count: int, spec: PageSpec = LAYOUTS["grid"], start: int = 0) -> list[Page]:
    """Pages start .. start+count-1 of the prose set in `spec`'s layout."""
    words = prose_stream()
    lines = textwrap.wrap(" ".join(words), width=spec.line_cols, break_long_words=True,
                          break_on_hyphens=False)
    pages, at_line = [], 0
    for i in range(start + count):
        rng = np.random.default_rng([3, i])   # split "prose": not the generator's 1 / 2
        n = line_count(rng, spec)
        page_lines = lines[at_line:at_line + n]
        at_line += n
        if len(page_lines) < n:
            raise ValueError(f"the prose source has only {len(lines)} lines of {spec.line_cols} "
                             f"cells: {i} pages fit")
        at = place(rng, spec)
        if i >= start:
            pages.append(Page(render(page_lines, spec, at), "\n".join(page_lines), "prose", i, at))
    return pages


def write_prose_pages(out_dir: Path, count: int, layout: str = "grid") -> list[Path]:
    """`prose-{i:05d}.png` and `.txt` for the first `count` pages, and SOURCE.txt naming the text."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "SOURCE.txt").write_text(source() + f"\nlayout: {layout}\n")
    return [save_page(out_dir, p) for p in make_prose_pages(count, LAYOUTS[layout])]
