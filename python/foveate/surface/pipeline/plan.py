"""Inputs -> pages: the documents a run reads and which pages of each.

Inputs are expanded (folders, stdin), each document is opened once for its page count and
closed again (a reader stage opens it to render its pages), and `pages` ("1-3,7") picks the
pages of PDFs and multi-page images; a plain image is one page. A document that cannot be
opened is a failure of the plan, not of the run: the other documents are read.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import FoveateError
from .page import Job


@dataclass
class PlannedDocument:
    item: str          # the input as given: a path, or "-"
    n_pages: int
    pages: list[int]   # the page numbers asked for


@dataclass
class Plan:
    documents: list[PlannedDocument] = field(default_factory=list)
    unopened: list[tuple[str, FoveateError]] = field(default_factory=list)
    stdin: bytes | None = None
    password: str | None = None
    recursive: bool = False

    def open(self, item: str):
        """The document `item` names, open (the caller closes it)."""
        from ...inputs.documents import open_document

        return open_document(self.stdin if item == "-" else item, password=self.password,
                             name="<stdin>" if item == "-" else None,
                             recursive_hint=self.recursive)

    def identity(self, item: str) -> dict:
        """What the input is, whatever path names it: its size and a content fingerprint."""
        data = self.stdin if item == "-" else Path(item).read_bytes()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def jobs(self, skip: dict[str, set[int]] | None = None) -> list[Job]:
        """Every page to read, in order; `skip`: pages of a document already read."""
        skip = skip or {}
        return [Job(d.item, d.n_pages, p) for d in self.documents for p in d.pages
                if p not in skip.get(d.item, ())]

    @property
    def n_pages_asked(self) -> int:
        return sum(len(d.pages) for d in self.documents)


def plan_documents(inputs: list[str], pages: str | None = None, recursive: bool = False,
                   password: str | None = None) -> Plan:
    """The plan of a run over `inputs` (paths, folders, "-"); stdin is read here, once."""
    from ...inputs.documents import expand_inputs, parse_pages

    if pages:
        parse_pages(pages, 1 << 30, "--pages", check_only=True)   # the syntax, up front
    items = expand_inputs(list(inputs), recursive)
    plan = Plan(stdin=sys.stdin.buffer.read() if "-" in items else None, password=password,
                recursive=recursive)
    for item in items:
        try:
            doc = plan.open(item)
            try:
                numbers = (parse_pages(pages, doc.n_pages, doc.name)
                           if doc.n_pages > 1 or doc.kind == "pdf" else [1])
            finally:
                n_pages = doc.n_pages
                doc.close()
            plan.documents.append(PlannedDocument(item, n_pages, numbers))
        except FoveateError as e:
            plan.unopened.append((item, e))
    return plan
