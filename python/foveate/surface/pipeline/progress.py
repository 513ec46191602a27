"""The progress of a run on stderr: pages done of total, pages per minute, ETA and the
current file; notes and page texts printed without tearing the bar.

tqdm, because it is already installed with foveate (gguf depends on it), writes to stderr
only, disables itself cleanly, and lines printed through tqdm.write do not tear the bar.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path


class Progress:
    """Notes go to stderr at once; the bar appears at start(total), for more than one page
    on a terminal, unless quiet."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar = quiet, None
        self.name = ""
        self.t0 = time.perf_counter()
        self.n = 0

    def start(self, total: int) -> None:
        if total > 1 and not self.quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="page", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} pages "
                                       "[{elapsed}<{remaining}{postfix}]")
        self.t0 = time.perf_counter()

    def note(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def out(self, text: str) -> None:
        """A page's text on stdout, without tearing the bar when both are the terminal."""
        if self.bar is not None and sys.stdout.isatty():
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def current(self, name: str) -> None:
        self.name = Path(name).name
        self._postfix()

    def step(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self._postfix()
            self.bar.update(n)

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(" ".join(x for x in (self._ppm(), self.name) if x),
                                     refresh=False)

    def _ppm(self) -> str:
        dt = time.perf_counter() - self.t0
        return f"{self.n / dt * 60:.1f} pages/min" if self.n and dt > 0 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
