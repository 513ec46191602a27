"""`foveate read INPUT... -o OUT --ray [ADDRESS]`: the driver's side of a cluster run.

The driver plans as a local run does (documents opened for their page counts, the -o folder
checked, pages already written skipped), sends the pages to read as a Ray dataset
(surface/ray_pages.py) and writes each page that comes back with the same DocumentOutput a
local run uses, so OUT is byte for byte what `foveate read -o OUT` writes (the journal's
lines may come in another order; the files are written in page order). The driver alone
writes: workers on other machines never touch OUT, and a rerun, local or on Ray, resumes it.

With `-np N` a task carries N pages, so a page that kills its worker every time would take
the other pages of its task with it: the pages of such tasks are read once more, one per
task (the bad page gets `--ray-attempts` more tries there), before any is reported.

`--dataset PATH` also writes every page read as one row (ray_pages.COLUMNS): PATH.jsonl is
one JSON Lines file, appended by reruns; any other PATH is a folder of Parquet files, one
`part-*.parquet` per run (`ray.data.read_parquet(PATH)` reads them all).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import errors
from ..errors import FoveateError, WorkerError
from .ray_pages import COLUMNS


def check_args(a) -> None:
    """--ray refusals, before anything connects."""
    if a.out is None:
        raise ValueError("--ray writes one file per document: add -o DIR")
    if "-" in a.inputs:
        raise ValueError("--ray reads files the workers open: save stdin to a file first")
    if a.trace:
        raise ValueError("--trace draws one page on this machine: leave out --ray")
    if a.json:
        raise ValueError("--json prints to stdout: with --ray, use -o DIR --format json")
    for flag, v in (("--ray-actors", a.ray_actors), ("--ray-attempts", a.ray_attempts)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be at least 1, got {v}")
    if a.dataset:
        d = Path(a.dataset)
        if d.suffix.lower() == ".jsonl" and d.is_dir():
            raise ValueError(f"--dataset {d}: that is a folder; a .jsonl dataset is one file")
        if d.suffix.lower() != ".jsonl" and d.exists() and not d.is_dir():
            raise ValueError(f"--dataset {d}: a file is there; give a folder (Parquet parts) "
                             f"or a path ending .jsonl")
    if (a.ray_cpus is not None and a.ray_cpus <= 0) or (a.ray_gpus is not None and a.ray_gpus < 0):
        raise ValueError(f"--ray-cpus must be > 0 and --ray-gpus >= 0, got {a.ray_cpus} and "
                         f"{a.ray_gpus}")


def pages(a, reader_kwargs: dict, sampling: dict, jobs: list, progress):
    """(item, name, n_pages, page number, page record or FoveateError) of every job, as the
    pages come back from the cluster (any order); jobs whose attempts all died come last."""
    from .ray_pages import actor_count, connect, pages_dataset, quiet_console

    if not jobs:
        return
    sink = _Dataset(a.dataset) if a.dataset else None   # a path it cannot write fails first
    try:
        connect(a.ray or None)
        quiet_console()
        cpus = a.ray_cpus if a.ray_cpus is not None else (a.threads or 1)
        gpus = a.ray_gpus if a.ray_gpus is not None else (1 if a.n_gpu_layers else 0)
        kw = dict(reader_kwargs)
        kw["threads"] = a.threads or max(1, int(cpus))
        read_kwargs = dict(prompt=a.prompt, max_tokens=a.n_predict, dpi=a.dpi,
                           password=a.password, parallel=a.parallel, **sampling)
        n_tasks = -(-len(jobs) // max(1, a.parallel))
        actors = a.ray_actors or actor_count(cpus, gpus, n_tasks)
        used = min(actors, n_tasks)   # the first pass's pool
        seen, t0 = set(), time.perf_counter()

        def read(todo: list, parallel: int):
            ds = pages_dataset(todo, a.model, a.mmproj, kw,
                               {**read_kwargs, "parallel": parallel},
                               actors=min(actors, -(-len(todo) // parallel)),
                               cpus_per_actor=cpus, gpus_per_actor=gpus,
                               max_attempts=a.ray_attempts)
            for row in _rows(ds):
                progress.current(row["source"])
                key = (row["source"], row["page"])
                if key in seen:   # a task that ran twice: the first answer stands
                    continue
                seen.add(key)
                if row["fatal"]:   # the model did not load on the worker: the run's error
                    raise (ValueError(row["error"]) if row["error_type"] == "ValueError"
                           else _error(row))
                if sink:
                    sink.add(row)
                if row["error"] is not None:
                    yield row["source"], row["source"], row["n_pages"], row["page"], _error(row)
                else:
                    yield (row["source"], row["source"], row["n_pages"], row["page"],
                           json.loads(row["record"]))

        yield from read(jobs, a.parallel)
        lost = [j for j in jobs if (j[0], j[2]) not in seen]
        if lost and a.parallel > 1:
            # with -np N a task holds N pages, and a page that kills its worker every time
            # takes the other pages of its task down with it: those pages again, one per task
            progress.note(f"foveate: --ray: {len(lost)} page{'s' if len(lost) != 1 else ''} "
                          f"of tasks whose workers died: read again one per task")
            yield from read(lost, 1)
        dt = time.perf_counter() - t0
        if not a.quiet:   # the cluster's rate, for sizing the next run
            progress.note(f"foveate: --ray: {len(seen)} page{'s' if len(seen) != 1 else ''} "
                          f"in {dt:.1f} s ({len(seen) / dt * 60:.1f} pages/min) on {used} "
                          f"actor{'s' if used != 1 else ''}")
        # a page missing now had --ray-attempts tries in each pass it was in: with -np, both
        tries = a.ray_attempts * (2 if a.parallel > 1 else 1)
        for item, n_pages, number in jobs:
            if (item, number) not in seen:
                yield item, item, n_pages, number, WorkerError(
                    f"the Ray worker reading it died on each of its {tries} attempts "
                    f"(--ray-attempts); the Ray logs say why")
    finally:
        if sink:
            sink.close()


def _error(row: dict) -> FoveateError:
    """A page's error as the exception class the worker raised (foveate's own), by name."""
    cls = getattr(errors, row["error_type"] or "", None)
    if isinstance(cls, type) and issubclass(cls, FoveateError):
        return cls(row["error"])
    return FoveateError(f"{row['error_type']}: {row['error']}")   # a bug: named, not hidden


def _rows(ds):
    """The dataset's rows as plain dicts; a failure of Ray itself is one clear error."""
    import ray.exceptions

    try:
        for row in ds.iter_rows():
            yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    except ray.exceptions.RayError as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise FoveateError(f"the Ray run failed: {first}") from None


class _Dataset:
    """--dataset PATH: the pages read, as JSON Lines (PATH.jsonl) or Parquet parts."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.rows, self.writer = [], None
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

    def add(self, row: dict) -> None:
        row = {k: row[k] for k in COLUMNS if k != "fatal"}
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
