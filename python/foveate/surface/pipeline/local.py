"""The reader stage on this machine: one Reader; a page at a time, or with parallel N > 1 up
to N pages decoding together (Reader.read_many). The Ray reader (surface/ray/driver.py) is
the other implementation of this stage."""
from __future__ import annotations

from typing import Iterable, Iterator

from ...errors import FoveateError
from .output import page_record
from .page import Job, PageDone
from .plan import Plan


class LocalReader:
    def __init__(self, reader, plan: Plan, progress, *, prompt: str | None = None,
                 max_tokens: int = 1024, dpi: float | None = None, trace: bool = False,
                 parallel: int = 1, sampling: dict | None = None):
        self.reader, self.plan, self.progress = reader, plan, progress
        self.prompt, self.max_tokens, self.dpi, self.trace = prompt, max_tokens, dpi, trace
        self.parallel, self.sampling = parallel, dict(sampling or {})

    def read(self, jobs: Iterable[Job]) -> Iterator[PageDone]:
        """A PageDone per job, in order; one document open at a time (jobs are in order)."""
        jobs = list(jobs)
        docs: dict = {}

        def doc_of(item):
            if item not in docs:
                for d in docs.values():
                    d.close()
                docs.clear()
                docs[item] = self.plan.open(item)
                self.progress.current(item)
            return docs[item]

        def done(job: Job, name: str, res) -> PageDone:
            if isinstance(res, FoveateError):
                return PageDone(job.item, name, job.n_pages, job.page, error=res)
            return PageDone(job.item, name, job.n_pages, job.page, record=page_record(res),
                            result=res)

        try:
            if self.parallel <= 1:
                for job in jobs:
                    try:
                        (res,) = list(self.reader.read_document(
                            doc_of(job.item), pages=[job.page], prompt=self.prompt,
                            max_tokens=self.max_tokens, dpi=self.dpi, trace=self.trace,
                            **self.sampling))
                    except FoveateError as e:
                        res = e
                    yield done(job, docs[job.item].name if job.item in docs else job.item, res)
                return
            budget = self.reader.render_budget(self.max_tokens, self.dpi)
            names = {}
            sampling = dict(self.sampling)
            draft = sampling.pop("draft", None)

            def images():
                for job in jobs:
                    try:
                        doc = doc_of(job.item)
                        names[job.item] = doc.name
                        yield drafted_page(doc, job.page, budget, draft)
                    except FoveateError as e:
                        yield e

            for job, res in zip(jobs, self.reader.read_many(
                    images(), prompt=self.prompt, max_tokens=self.max_tokens,
                    parallel=self.parallel, **sampling)):
                name = names.get(job.item, job.item)
                if isinstance(res, Exception) and not isinstance(res, FoveateError):
                    res = FoveateError(f"{type(res).__name__}: {res}")   # a bug: named, not hidden
                if not isinstance(res, FoveateError):
                    res.source, res.page, res.n_pages = name, job.page, job.n_pages
                    res.image = f"{name}#page={job.page}" if job.n_pages > 1 else name
                yield done(job, name, res)
        finally:
            for d in docs.values():
                d.close()


def drafted_page(doc, number: int, budget, draft):
    """Page `number` of `doc` for Reader.read_many: its picture, or with a draft (a source's
    name, inputs/draft_sources.py, or a DraftText for every page) a PageJob carrying the page's
    draft, made here as read_document makes it."""
    from ...engine.batch import PageJob
    from ...inputs.draft_sources import page_draft

    image = doc.page(number, budget)
    if draft is None:
        return image
    return PageJob(image, draft=page_draft(draft, doc, number, image))
