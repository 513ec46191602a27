"""DocTags answers as markdown and HTML, read by docling-core (the `docling` extra).

granite-docling-258M and SmolDocling-256M (engine/families.py: the Idefics3 fine-tune
"docling") answer in DocTags, docling's markup of a page (`<doctag><section_header_level_1>
<loc_..>...`). This module is the one place that reads them, and it reads them with
docling-core's own DocTags reader (`DocTagsDocument.from_doctags_and_image_pairs`,
`DoclingDocument.load_from_doctags`, its markdown and HTML exports), imported when first
needed: never a converter of our own.

Which answers are DocTags (`mode`): the model's identity decides. A docling fine-tune's
every answer is read as DocTags ("model"); a model of the family they are tuned from whose
name does not say docling (a conversion that lost its name) has an answer read as DocTags
when the answer itself is wrapped in `<doctag>` ("wrapper"); every other model's answers are
left as they are (no conversion, records unchanged). Pages are read without their image
(docling-core takes None): the exports used here need no pixels (pictures are placeholders).

Why the pipeline (surface/pipeline) and not the engine or inputs: the engine's job ends at
the model's text, and what that text becomes for a user (stdout, -o files, --json) is what
the pipeline's sinks share; converting the reader stage's page records in one place before
the sinks serves the local and the Ray reader alike, and only the driver needs docling-core.

A page record (output.page_record) after `convert_record`: `text` is docling-core's markdown
of the page, `doctags` the answer as the model wrote it; an answer docling-core reads nothing
from (plain text, for a prompt of the user's) keeps its text, `doctags` is null and a
warning says so.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

INSTALL = "DocTags output needs docling-core: pip install 'foveate[docling]'"
MODEL, WRAPPER = "model", "wrapper"
_TAG = re.compile(r"<[^<>]*>")


class DoclingMissing(ImportError):
    """docling-core, which reads DocTags, is not installed."""


def mode(ident) -> str | None:
    """How a model's answers are told to be DocTags, from its identity (engine.families'
    Identified, as `Engine.family` or `Reader.check_settings(...).family` hold it): MODEL
    (every answer: a docling fine-tune), WRAPPER (an answer wrapped in <doctag>: the family
    docling models are tuned from, unnamed), or None (never)."""
    from ...engine.families import FINE_TUNES

    if ident is None or ident.family is None:
        return None
    if ident.fine_tune == "docling":
        return MODEL
    if not ident.fine_tune and ident.family.key in FINE_TUNES["docling"].bases:
        return WRAPPER
    return None


def _docling():
    try:
        from docling_core.types.doc import DocItemLabel, DoclingDocument, DocTagsDocument
    except ImportError as e:
        raise DoclingMissing(INSTALL) from e
    return DocItemLabel, DoclingDocument, DocTagsDocument


def require() -> None:
    """Raise DoclingMissing (INSTALL) when docling-core cannot be imported."""
    _docling()


def is_wrapped(answer: str) -> bool:
    return answer.lstrip().startswith("<doctag>")


def document(answer: str, name: str = "page"):
    """(docling-core's DoclingDocument of one page's answer, "") or (None, why it is not
    DocTags): docling-core failed on it, or found nothing in an answer that holds text."""
    _, DoclingDocument, DocTagsDocument = _docling()
    try:
        doc = DoclingDocument.load_from_doctags(
            DocTagsDocument.from_doctags_and_image_pairs([answer], None), document_name=name)
    except Exception as e:   # its parser on whatever a model wrote: named in the warning
        return None, f"docling-core could not read it ({type(e).__name__}: {e})"
    if next(iter(doc.iterate_items()), None) is None and _TAG.sub("", answer).strip():
        return None, "docling-core found no DocTags in it"
    return doc, ""


def convert_record(rec: dict, how: str | None) -> dict:
    """A page record with `text` as docling-core's markdown and the answer in `doctags`
    (placed after `text`); the record itself when the answer is not to be read as DocTags."""
    answer = rec["text"]
    if how is None or (how == WRAPPER and not is_wrapped(answer)):
        return rec
    try:
        doc, why = document(answer)
    except DoclingMissing:
        if how == MODEL:   # required up front (the CLI checks before reading)
            raise
        doc, why = None, INSTALL   # WRAPPER: a model that may never answer DocTags
    md = None
    if doc is not None:
        try:
            md = doc.export_to_markdown()
        except Exception as e:   # an item docling-core read but cannot export
            why = f"docling-core could not export it ({type(e).__name__}: {e})"
    if md is None and how == WRAPPER and why != INSTALL:
        why = f"it starts with <doctag>, but {why}"
    out = {}
    for k, v in rec.items():
        out[k] = v
        if k == "text":
            out["text"] = md if md is not None else answer
            out["doctags"] = answer if md is not None else None
    if md is None:
        out["warnings"] = [*rec.get("warnings", []),
                           f"the answer was not read as DocTags ({why}): its text is kept "
                           f"as the model wrote it"]
    return out


def convert_pages(pages: Iterable, how: str | None) -> Iterator:
    """The reader stage's PageDone items, each read page's record converted (convert_record),
    for every sink after it."""
    for done in pages:
        if done.record is not None and how is not None:
            done.record = convert_record(done.record, how)
        yield done


def raw(rec: dict) -> str:
    """A page's answer as the model wrote it (--format doctags)."""
    return rec["doctags"] if rec.get("doctags") is not None else rec["text"]


def html(pages: list[dict], name: str) -> str:
    """docling-core's HTML of a document's pages (records in page order): each page's DocTags
    read again, a page whose answer was not DocTags as one paragraph of its text."""
    DocItemLabel, DoclingDocument, _ = _docling()
    docs = []
    for rec in pages:
        doc = document(rec["doctags"], name)[0] if rec.get("doctags") is not None else None
        if doc is None:
            doc = DoclingDocument(name=name)
            if rec["text"].strip():
                doc.add_text(label=DocItemLabel.TEXT, text=rec["text"])
        docs.append(doc)
    whole = DoclingDocument.concatenate(docs) if docs else DoclingDocument(name=name)
    whole.name = name
    return whole.export_to_html()
