"""What moves between the pipeline's stages: a Job (a page to read) and a PageDone (what
became of it: its page record, or its error)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ...errors import FoveateError


class Job(NamedTuple):
    """One page to read: the input as given (a path, or "-" for stdin), its page count, and
    the 1-based page number. A tuple, so it travels to Ray workers as one."""
    item: str
    n_pages: int
    page: int


@dataclass
class PageDone:
    """A page the reader stage finished: `record` (docs/output-format.md's page record) when
    it was read, `error` when it failed; `result` is the Result itself when the page was read
    on this machine (its trace), None from a Ray worker."""
    item: str
    name: str          # the document's name, as errors and outputs show it
    n_pages: int
    page: int
    record: dict | None = None
    error: FoveateError | None = None
    result: object | None = None

    @property
    def where(self) -> str:
        """The page, as messages name it."""
        return self.name if self.n_pages == 1 else f"{self.name} page {self.page}"

    @property
    def image(self) -> str:
        """The page, as the text output's header names it (Result.image)."""
        return f"{self.name}#page={self.page}" if self.n_pages > 1 else self.name
