"""The document pipeline without a model: plan -> a reader stage -> sinks (surface/pipeline).

The reader stage here is a stand-in that yields page records only, as the Ray reader does
(no Result), out of page order, with one failed page: the sinks must write what a local run
writes, and the run must report the failure, whatever reader ran."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import md_pages


def _docs(tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (64, 48), "white").save(one)
    three = tmp_path / "three.tif"
    frames = [Image.new("RGB", (64, 48), c) for c in ("white", "grey", "black")]
    frames[0].save(three, save_all=True, append_images=frames[1:])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    return one, three, bad


def _record(page: int, text: str) -> dict:
    return {"page": page, "text": text, "warnings": [], "stats": {}}


class RecordsOnly:
    """A reader stage that reads nothing: each job's page comes back as a record (page 2 of
    the TIFF as an error), in reverse order."""

    def read(self, jobs):
        from foveate.errors import ImageError
        from foveate.surface.pipeline.page import PageDone

        for job in reversed(list(jobs)):
            done = PageDone(job.item, job.item, job.n_pages, job.page)
            if job.item.endswith(".tif") and job.page == 2:
                done.error = ImageError("the page is unreadable")
            else:
                done.record = _record(job.page, f"text of {job.item} page {job.page}")
            yield done


def test_plan_counts_pages_and_keeps_unopened_documents_apart(tmp_path):
    from foveate.surface.pipeline.plan import plan_documents

    one, three, bad = _docs(tmp_path)
    plan = plan_documents([str(one), str(three), str(bad)], pages="2-3")
    assert [(d.item, d.n_pages, d.pages) for d in plan.documents] == [
        (str(one), 1, [1]), (str(three), 3, [2, 3])]   # --pages picks pages of multi-page inputs
    assert [item for item, _ in plan.unopened] == [str(bad)]
    assert [tuple(j) for j in plan.jobs({str(three): {2}})] == [(str(one), 1, 1), (str(three), 3, 3)]


def test_sinks_write_in_page_order_and_the_run_reports_the_failed_page(tmp_path, capsys):
    from foveate.surface.pipeline import sinks as S
    from foveate.surface.pipeline.plan import plan_documents
    from foveate.surface.pipeline.progress import Progress
    from foveate.surface.pipeline.run import report_unopened, run_pipeline

    one, three, bad = _docs(tmp_path)
    plan = plan_documents([str(one), str(three), str(bad)])
    failures = report_unopened(plan.unopened)
    progress = Progress(quiet=True)
    files = S.FilesOut(tmp_path / "out", plan, "markdown", {"k": 1}, overwrite=False)
    dataset = S.DatasetOut(str(tmp_path / "rows.jsonl"))
    jobs = files.todo(plan, progress.note)
    assert len(jobs) == 4
    code = run_pipeline(RecordsOnly().read(jobs), [files, dataset], progress, failures)
    err = capsys.readouterr().err
    assert code == 1
    assert "foveate: 2 failed, 3 pages read:" in err                 # bad.png and TIFF page 2
    assert f"{three} page 2: ImageError: the page is unreadable" in err
    pages = md_pages((tmp_path / "out" / "three.md").read_text())
    assert list(pages) == [1, 3]                                     # page order, not arrival
    assert pages[3] == f"text of {three} page 3"
    rows = [json.loads(ln) for ln in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert sorted((r["source"], r["page"], r["error_type"]) for r in rows) == sorted(
        [(str(one), 1, None), (str(three), 1, None), (str(three), 2, "ImageError"),
         (str(three), 3, None)])
    assert json.loads(next(r for r in rows if r["page"] == 3)["record"])["text"] == pages[3]

    # the rerun resumes: only the failed page is left, and reading it completes the file
    files = S.FilesOut(tmp_path / "out", plan, "markdown", {"k": 1}, overwrite=False)
    jobs = files.todo(plan, progress.note)
    assert [tuple(j) for j in jobs] == [(str(three), 3, 2)]
    assert "2 of the pages asked for are already there (resume); 1 to read" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match=r"other settings \(k\)"):
        S.FilesOut(tmp_path / "out", plan, "markdown", {"k": 2}, overwrite=False)


def test_a_sink_that_fails_on_a_page_is_a_failure_and_the_text_stays(tmp_path, capsys):
    from foveate.surface.pipeline import sinks as S
    from foveate.surface.pipeline.plan import plan_documents
    from foveate.surface.pipeline.progress import Progress
    from foveate.surface.pipeline.run import run_pipeline

    class Broken(S.Sink):
        def add(self, done):
            raise S.PageOutputError("--trace x.gif: the disk is full")

    one, _, _ = _docs(tmp_path)
    plan = plan_documents([str(one)])
    progress = Progress(quiet=True)
    files = S.FilesOut(tmp_path / "out", plan, "text", {}, overwrite=False)
    code = run_pipeline(RecordsOnly().read(plan.jobs()), [files, Broken()], progress, [])
    assert code == 1
    assert "--trace x.gif: the disk is full" in capsys.readouterr().err
    assert f"text of {one} page 1" in (tmp_path / "out" / "one.txt").read_text()
