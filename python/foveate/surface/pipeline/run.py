"""The pipeline's driver: each page from a reader stage goes to every sink; a failed page or
document is reported on stderr with its file and page, and does not stop the others; a
summary ends the run, and its exit code is 1 when anything failed (0 when every page was
read)."""
from __future__ import annotations

import sys
from typing import Iterable

from .page import PageDone
from .sinks import PageOutputError, Sink


def report_unopened(unopened: list) -> list[str]:
    """The documents a plan could not open, on stderr now (before a model loads); their
    failures, as the run's summary lists them."""
    for _, e in unopened:
        print(f"foveate: {type(e).__name__}: {e}", file=sys.stderr)
    return [str(e) for _, e in unopened]


def run_pipeline(pages: Iterable[PageDone], sinks: list[Sink], progress,
                 failures: list[str]) -> int:
    """Drain `pages` into `sinks`; returns the exit code. `failures`: those already known
    (documents that could not be opened)."""
    failures, n_read = list(failures), 0
    try:
        for done in pages:
            if done.error is not None:   # one bad page does not stop the others
                e = done.error
                failures.append(str(e) if done.name in str(e) else f"{done.where}: {e}")
                progress.note(f"foveate: {done.where}: {type(e).__name__}: {e}")
            else:
                n_read += 1
                for note in done.record["warnings"]:
                    progress.note(f"foveate: {done.where}: {note}")
            for sink in sinks:
                try:
                    sink.add(done)
                except PageOutputError as e:
                    failures.append(str(e))
                    progress.note(f"foveate: {e}")
            progress.step()
        for sink in sinks:
            sink.finish()
    finally:
        progress.close()
        for sink in sinks:
            sink.close()
    if failures:
        print(f"foveate: {len(failures)} failed, {n_read} page{'s' if n_read != 1 else ''} read:",
              file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0
