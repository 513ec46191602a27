"""Where read pages go: the last stage of the pipeline. Each sink takes every PageDone (read
or failed) through add() and writes what it writes; none knows which reader ran.

    TextOut     stdout: each page's text (`foveate read` without -o or --json)
    JsonOut     stdout: one JSON list of page records and errors (--json)
    FilesOut    -o DIR: a file per document, page by page, journal and resume (output.py)
    DatasetOut  --dataset PATH: a row per page, JSON Lines or Parquet parts
    TraceOut    --trace OUT.gif|png: where fixation looked on the page

finish() runs when every page went through; close() always, last.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .output import JSON_SCHEMA, DocumentOutput, OutputError, output_stems
from .page import Job, PageDone
from .plan import Plan


class PageOutputError(Exception):
    """A sink could not write a page's extra output (its trace picture): the page's text is
    safe, the run counts it as a failure."""


class Sink:
    def add(self, done: PageDone) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class TextOut(Sink):
    def __init__(self, progress, multi: bool):
        self.progress, self.multi, self.first = progress, multi, True

    def add(self, done: PageDone) -> None:
        if done.error is not None:
            return
        self.progress.out(("\n" if not self.first else "")
                          + (f"==> {done.image} <==\n" if self.multi else "")
                          + done.record["text"])
        self.first = False


class JsonOut(Sink):
    """The schema of docs/output-format.md, a page per entry; the documents that could not be
    opened come first."""

    def __init__(self, unopened: list):
        self.entries = [{"schema": JSON_SCHEMA, "source": item, "error": str(e),
                         "error_type": type(e).__name__} for item, e in unopened]
        self.finished = False

    def add(self, done: PageDone) -> None:
        head = {"schema": JSON_SCHEMA, "source": done.name, "n_pages": done.n_pages}
        if done.error is not None:
            self.entries.append({**head, "page": done.page, "error": str(done.error),
                                 "error_type": type(done.error).__name__})
        else:
            self.entries.append({**head, **done.record})

    def finish(self) -> None:
        self.finished = True

    def close(self) -> None:   # after the progress bar is gone
        if self.finished:
            json.dump(self.entries, sys.stdout, indent=2, ensure_ascii=False)
            print()


class FilesOut(Sink):
    """-o DIR. A document's settings or content that changed since an earlier run are refused
    here, before any page is read (ValueError, unless overwrite)."""

    def __init__(self, out_dir, plan: Plan, fmt: str, settings: dict, overwrite: bool):
        stems = output_stems([d.item for d in plan.documents])
        self.outputs: dict[str, DocumentOutput] = {}
        for d in plan.documents:
            try:
                self.outputs[d.item] = DocumentOutput(
                    out_dir, stems[d.item], "<stdin>" if d.item == "-" else d.item, d.n_pages,
                    fmt, settings, overwrite, plan.identity(d.item))
            except OutputError as e:
                raise ValueError(str(e)) from None

    def todo(self, plan: Plan, note) -> list[Job]:
        """The plan's pages not already in DIR (resume); a note per resumed document."""
        for d in plan.documents:
            out = self.outputs[d.item]
            have = out.done & set(d.pages)
            if have:
                note(f"foveate: {out.path}: {len(have)} of the pages asked for are already "
                     f"there (resume); {len(set(d.pages) - out.done)} to read")
        return plan.jobs({item: out.done for item, out in self.outputs.items()})

    def add(self, done: PageDone) -> None:
        if done.error is None:
            self.outputs[done.item].add(done.record)

    def finish(self) -> None:
        for out in self.outputs.values():
            out.write()   # a document whose pages were all done before still gets its file


class DatasetOut(Sink):
    """--dataset PATH: PATH.jsonl is one JSON Lines file, appended by reruns; any other PATH
    is a folder of Parquet files, one `part-*.parquet` per run. A row per page, read or
    failed: source, n_pages, page, text, error, error_type, record (the page record as JSON)."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.rows, self.writer, self.f = [], None, None
        try:
            if self.jsonl:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.f = open(self.path, "a", encoding="utf-8")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                probe = self.path / ".foveate-write-check"
                probe.touch()
                probe.unlink()
        except OSError as e:
            raise ValueError(f"--dataset {path}: cannot write there "
                             f"({e.strerror or type(e).__name__})") from None
        if not self.jsonl:
            self.part = self.path / f"part-{time.strftime('%Y%m%d-%H%M%S')}-{id(self):x}.parquet"

    def add(self, done: PageDone) -> None:
        rec, err = done.record, done.error
        row = {"source": done.name, "n_pages": done.n_pages, "page": done.page,
               "text": rec["text"] if rec else None,
               "error": str(err) if err is not None else None,
               "error_type": type(err).__name__ if err is not None else None,
               "record": json.dumps(rec, ensure_ascii=False) if rec else None}
        if self.jsonl:
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.f.flush()
            return
        self.rows.append(row)
        if len(self.rows) >= 256:   # a row group at a time: the driver holds 256 pages at most
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        schema = pa.schema([("source", pa.string()), ("n_pages", pa.int64()),
                            ("page", pa.int64()), ("text", pa.string()), ("error", pa.string()),
                            ("error_type", pa.string()), ("record", pa.string())])
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.part, schema)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=schema))
        self.rows = []

    def close(self) -> None:
        if self.jsonl:
            self.f.close()
            return
        self._flush()
        if self.writer is not None:
            self.writer.close()


class TraceOut(Sink):
    """--trace: the picture of a page read with trace=True, after its text is safe (a failed
    picture does not lose the page)."""

    def __init__(self, path: str, progress):
        self.path, self.progress = path, progress

    def add(self, done: PageDone) -> None:
        if done.result is None or done.error is not None:
            return
        from .trace_picture import save

        try:
            self.progress.note(f"foveate: trace: {save(done.result.trace, self.path)}")
        except (OSError, ValueError) as e:
            raise PageOutputError(f"--trace {self.path}: {e}") from None
