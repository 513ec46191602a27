"""The Ray reader stage of `foveate read INPUT... -o OUT --ray [ADDRESS]`: the driver's side.

The driver plans as a local run does (surface/pipeline: documents opened for their page
counts, the -o folder checked, pages already written skipped) and this stage sends the
pages to read as a Ray dataset (workers.py); each page comes back as a PageDone with the
record the worker made, so the sinks write OUT byte for byte as `foveate read -o OUT` does
(the journal's lines may come in another order; the files are written in page order). The
driver alone writes: workers on other machines never touch OUT, and a rerun, local or on
Ray, resumes it.

With `-np N` a task carries N pages, so a page that kills its worker every time would take
the other pages of its task with it: the pages of such tasks are read once more, one per
task (the bad page gets `--ray-attempts` more tries there), before any is reported.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Iterator

from ... import errors
from ...errors import FoveateError, WorkerError
from ..pipeline.page import Job, PageDone


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


class RayReader:
    """The reader stage on a Ray cluster: actors holding one Reader each (workers.py)."""

    def __init__(self, a, reader_kwargs: dict, sampling: dict, progress):
        self.a, self.progress = a, progress
        self.reader_kwargs, self.sampling = reader_kwargs, sampling

    def read(self, jobs: Iterable[Job]) -> Iterator[PageDone]:
        """A PageDone per job, as the pages come back from the cluster (any order); jobs
        whose attempts all died come last, as WorkerErrors."""
        from .workers import actor_count, connect, pages_dataset, quiet_console

        a, progress = self.a, self.progress
        jobs = list(jobs)
        if not jobs:
            return
        connect(a.ray or None)
        quiet_console()
        cpus = a.ray_cpus if a.ray_cpus is not None else (a.threads or 1)
        gpus = a.ray_gpus if a.ray_gpus is not None else (1 if a.n_gpu_layers else 0)
        kw = dict(self.reader_kwargs)
        kw["threads"] = a.threads or max(1, int(cpus))
        read_kwargs = dict(prompt=a.prompt, max_tokens=a.n_predict, dpi=a.dpi,
                           password=a.password, parallel=a.parallel, **self.sampling)
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
                done = PageDone(row["source"], row["source"], row["n_pages"], row["page"])
                if row["error"] is not None:
                    done.error = _error(row)
                else:
                    done.record = json.loads(row["record"])
                yield done

        yield from read(jobs, a.parallel)
        lost = [j for j in jobs if (j.item, j.page) not in seen]
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
        for job in jobs:
            if (job.item, job.page) not in seen:
                yield PageDone(job.item, job.item, job.n_pages, job.page, error=WorkerError(
                    f"the Ray worker reading it died on each of its {tries} attempts "
                    f"(--ray-attempts); the Ray logs say why"))


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
