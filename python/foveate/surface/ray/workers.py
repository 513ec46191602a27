"""Pages on a Ray cluster: a Ray Data dataset of (document, page) rows, read by actors that
each hold one Reader (model and projector loaded once per actor).

Why Ray Data and not a queue of our own: `map_batches` with a callable class is Ray's
batch-inference pattern (a pool of stateful actors, backpressure, actor restarts and task
retries), so a killed worker costs only the pages it held: Ray restarts the actor and runs
its task again. A page that kills its worker every time is not retried forever: each task
gets `max_attempts` tries, then its block is dropped (`DataContext.max_errored_blocks`) and
the driver reports its pages as failed. A page that fails in Python (a bad page, a corrupt
PDF page) is not a crash: its row carries the error, as a local run reports it.

Rows name pages, they do not carry them: the actor opens the document and renders the page
(PDFs render in the workers, not the driver), working in the driver's folder so that the
paths and the error messages are the local run's. On a cluster of several machines the
inputs must be at the same path on every node (a shared filesystem), and foveate installed.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from ...errors import FoveateError
from ..pipeline.local import drafted_page

# a row of the pages dataset; `record` is the page record of docs/output-format.md, as JSON
COLUMNS = ("source", "n_pages", "page", "text", "error", "error_type", "fatal", "record")
# test hook: a folder of NAME-PAGE.die files (the actor reading that page exits once, the
# file renamed .died) and NAME-PAGE.always files (it exits every time, a line added to
# NAME-PAGE.runs each time): a killed worker
TEST_DIE_DIR = "FOVEATE_RAY_TEST_DIE"


class PageReader:
    """The callable class of `map_batches`: one Reader per actor, pages in, rows out."""

    def __init__(self, model, mmproj, reader_kwargs: dict, read_kwargs: dict, cwd: str | None):
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)   # the driver's folder: relative inputs resolve as they do there
        self.read_kwargs = dict(read_kwargs)
        self.password = self.read_kwargs.pop("password", None)
        self.reader, self.load_error = None, None
        try:
            from ..api import Reader
            self.reader = Reader(model, mmproj, **reader_kwargs)
        except Exception as e:   # noqa: BLE001 - every page gets it, the driver stops the run
            self.load_error = e   # (an actor dying in its constructor would be Ray's traceback)
        self.doc = None

    def _document(self, item: str):
        from ...inputs.documents import open_document

        if self.doc is None or self.doc[0] != item:
            self.close_document()
            self.doc = (item, open_document(item, password=self.password))
        return self.doc[1]

    def close_document(self):
        if self.doc is not None:
            self.doc[1].close()
            self.doc = None

    def __call__(self, batch: dict) -> dict:
        jobs = list(zip(*(batch[k].tolist() for k in ("source", "n_pages", "page"))))
        if self.load_error is not None:
            return _columns([_error_row(s, n, p, self.load_error, fatal=True) for s, n, p in jobs])
        kw = dict(self.read_kwargs)
        dpi, parallel = kw.pop("dpi", None), kw.pop("parallel", 1)
        rows = []
        if parallel <= 1:
            for source, n_pages, number in jobs:
                try:
                    (res,) = list(self.reader.read_document(self._document(source),
                                                            pages=[number], dpi=dpi, **kw))
                    _maybe_die(source, number)
                    rows.append(_page_row(source, n_pages, number, res))
                except Exception as e:   # noqa: BLE001 - a bug on one page is that page's error
                    rows.append(_error_row(source, n_pages, number, e))
            return _columns(rows)
        budget = self.reader.render_budget(kw.get("max_tokens", 1024), dpi)
        draft = kw.pop("draft", None)

        def images():
            for source, _, number in jobs:
                try:
                    yield drafted_page(self._document(source), number, budget, draft)
                except FoveateError as e:
                    yield e
                except Exception as e:   # noqa: BLE001 - a bug on one page: its own error
                    yield FoveateError(f"{type(e).__name__}: {e}")

        try:
            for (source, n_pages, number), res in zip(jobs, self.reader.read_many(
                    images(), parallel=parallel, **kw)):
                if isinstance(res, Exception):
                    rows.append(_error_row(source, n_pages, number, res))
                    continue
                _maybe_die(source, number)
                res.page = number
                rows.append(_page_row(source, n_pages, number, res))
        except Exception as e:   # noqa: BLE001 - the batch broke: its unread pages say why
            rows += [_error_row(s, n, p, e) for s, n, p in jobs[len(rows):]]
        return _columns(rows)


def _maybe_die(source: str, number: int) -> None:
    """The test hook (TEST_DIE_DIR): exit as a killed worker would, after the page is read
    and before it is returned, so the work is lost and Ray must retry it."""
    d = os.environ.get(TEST_DIE_DIR)
    if not d:
        return
    key = str(Path(d) / f"{Path(source).name}-{number}")
    if os.path.exists(key + ".always"):
        with open(key + ".runs", "a") as f:   # the test counts the attempts Ray made
            f.write("died\n")
        os._exit(1)
    try:
        os.rename(key + ".die", key + ".died")   # claimed: one worker dies, once
    except OSError:
        return
    os._exit(1)


def _page_row(source, n_pages, number, res) -> dict:
    from ..pipeline.output import page_record

    res.page = number
    return {"source": source, "n_pages": n_pages, "page": number, "text": res.text,
            "error": None, "error_type": None, "fatal": False,
            "record": json.dumps(page_record(res), ensure_ascii=False)}


def _error_row(source, n_pages, number, e: Exception, fatal: bool = False) -> dict:
    return {"source": source, "n_pages": n_pages, "page": number, "text": None,
            "error": str(e), "error_type": type(e).__name__, "fatal": fatal, "record": None}


def _columns(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in COLUMNS}


class _DroppedBlocks(logging.Filter):
    """Hides Ray Data's "Ignoring this exception" record (with its traceback) for a block
    whose attempts all died: the CLI reports those pages itself; Ray's log file keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.endswith("streaming_executor_state")
                    and "Ignoring this exception" in record.getMessage())


def quiet_console() -> None:
    """For the CLI: Ray Data's console lines (execution started / finished) say nothing the
    driver's bar and summary do not, and a dropped block is reported as its pages' errors.
    Errors still show; Ray's log files keep everything."""
    for h in logging.getLogger("ray.data").handlers:
        if not isinstance(h, logging.FileHandler) and "File" not in type(h).__name__:
            h.setLevel(logging.ERROR)
            if not any(isinstance(f, _DroppedBlocks) for f in h.filters):
                h.addFilter(_DroppedBlocks())


def connect(address: str | None = None) -> None:
    """ray.init once: `address` ("auto", "ray://host:10001", "host:6379"), RAY_ADDRESS, or a
    local cluster on this machine (None). A cluster that cannot be reached is a ValueError."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra brings both; a bare `pip install ray` has no Data
    except ImportError as e:
        raise ValueError(f"--ray needs Ray Data ({e}): pip install 'foveate[ray]'") from None

    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"--ray {address or ''}: cannot reach the Ray cluster "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def actor_count(cpus_per_actor: float, gpus_per_actor: float, n_tasks: int) -> int:
    """As many actors as the cluster's CPUs (or GPUs) hold, at least 1, at most the tasks.
    A cluster that cannot hold one actor is refused: Ray would wait for it forever."""
    import ray

    res = ray.cluster_resources()
    for what, need, flag in (("GPU", gpus_per_actor, "--ray-gpus; 1 by default with -ngl"),
                             ("CPU", cpus_per_actor, "--ray-cpus")):
        if need and res.get(what, 0) < need:
            raise ValueError(f"each actor asks for {need:g} {what} ({flag}) and the Ray "
                             f"cluster has {res.get(what, 0):g}: add {what} nodes, or ask "
                             f"for less")
    fits = (res.get("GPU", 0) // gpus_per_actor if gpus_per_actor
            else res.get("CPU", 1) // max(cpus_per_actor, 1e-9))
    return int(max(1, min(fits, n_tasks)))


def pages_dataset(jobs: list[tuple[str, int, int]], model, mmproj, reader_kwargs: dict,
                  read_kwargs: dict, *, actors: int | None = None, cpus_per_actor: float = 1,
                  gpus_per_actor: float = 0, max_attempts: int = 3):
    """A lazy Ray dataset of COLUMNS, one row per job (source, n_pages, page number).
    read_kwargs: what Reader.read_document takes per page (prompt, max_tokens, dpi, password,
    sampling) and `parallel` (pages decoding together in one actor, Reader.read_many)."""
    import ray.data

    if max_attempts < 1:
        raise ValueError(f"--ray-attempts must be at least 1, got {max_attempts}")
    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise ValueError(f"--ray-cpus must be > 0 and --ray-gpus >= 0, got {cpus_per_actor} "
                         f"and {gpus_per_actor}")
    per_task = max(1, int(read_kwargs.get("parallel", 1)))
    n_tasks = -(-len(jobs) // per_task)
    rows = [{"source": s, "n_pages": n, "page": p} for s, n, p in jobs]
    n = actor_count(cpus_per_actor, gpus_per_actor, n_tasks)   # checks the cluster, too
    n = actors or n
    ds = ray.data.from_items(rows, override_num_blocks=max(1, n_tasks))
    # this dataset's context (and its descendants'), not the process's DataContext
    ds.context.max_errored_blocks = -1       # a block whose attempts all died: pages reported
    ds.context.enable_progress_bars = False  # the CLI's own bar counts pages
    ds.context.print_on_execution_start = False
    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter in Ray 2.58-2.63 (the
        # extra pins <2.64, where ray_remote_args goes): they are what bounds the retries
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            PageReader, batch_size=per_task, batch_format="numpy",
            # one task in flight per actor: a worker's death then costs an attempt of its own
            # page only, not of the page queued behind it (with 2, a page that kills its
            # worker every time took an innocent neighbour down with it)
            compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=1),
            num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
            fn_constructor_kwargs=dict(model=str(model), mmproj=str(mmproj),
                                       reader_kwargs=reader_kwargs, read_kwargs=read_kwargs,
                                       cwd=os.getcwd()),
            # the test hook travels from the driver: a cluster's workers have its raylet's env
            runtime_env=({"env_vars": {TEST_DIE_DIR: os.environ[TEST_DIE_DIR]}}
                         if os.environ.get(TEST_DIE_DIR) else None),
            max_restarts=-1, max_task_retries=max_attempts - 1)


def read_dataset(inputs, model, mmproj, *, pages: str | None = None, recursive: bool = False,
                 password: str | None = None, prompt: str | None = None,
                 max_tokens: int = 1024, dpi: float | None = None, parallel: int = 1,
                 actors: int | None = None, cpus_per_actor: float = 1,
                 gpus_per_actor: float = 0, max_attempts: int = 3, address: str | None = None,
                 sampling: dict | None = None, **reader_kwargs):
    """Read documents on a Ray cluster: a lazy `ray.data.Dataset`, one row per page, of
    COLUMNS (`record`: the page record of docs/output-format.md as JSON; `error`, `error_type`
    on a page that failed). inputs: paths or folders (as `foveate read`), seen at the same
    path by every worker. Pages whose attempts all died are missing from it (the CLI's
    `--ray` reports them). sampling: as Reader.read (temperature=, seed=...). reader_kwargs:
    as Reader (fixation=, merge=, preset=, n_ctx=...); threads default to cpus_per_actor.
    Checks the settings (ValueError, as Reader), connects (`address`, as `connect`); a
    document that cannot be opened raises here. Ray Data's console logging is left as the
    caller has it (the CLI quiets it: `quiet_console`).

    >>> ds = read_dataset(["scans/"], "model.gguf", "mmproj.gguf", fixation=0.05)
    >>> ds.write_parquet("pages/")
    """
    from ..api import Reader
    from ..pipeline.plan import plan_documents

    # what every actor's Reader would refuse, refused here without a cluster or a model load
    Reader.check_settings(model, mmproj, parallel=parallel, **reader_kwargs)
    connect(address)
    plan = plan_documents([str(i) for i in inputs], pages, recursive, password)
    if plan.unopened:
        raise plan.unopened[0][1]
    jobs = plan.jobs()
    reader_kwargs.setdefault("threads", max(1, int(cpus_per_actor)))
    reader_kwargs["parallel"] = parallel
    read_kwargs = dict(prompt=prompt, max_tokens=max_tokens, dpi=dpi, password=password,
                       parallel=parallel, **(sampling or {}))
    return pages_dataset(jobs, model, mmproj, reader_kwargs, read_kwargs, actors=actors,
                         cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                         max_attempts=max_attempts)
