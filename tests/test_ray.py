"""`foveate read --ray` and foveate.ray.read_dataset on a local Ray cluster started here (2
CPUs, 2 actors): the same output files as a local run, byte for byte; resume across local
and Ray runs; a killed worker's page read again and written once; a page that kills its
worker every time reported; bad inputs reported per page as a local run reports them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from conftest import DATA, REPO, md_pages

READER = REPO / "models/reader"
MODEL_FILES = (READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf")
MODEL = ["-m", str(MODEL_FILES[0]), "--mmproj", str(MODEL_FILES[1])]
PAGES = sorted((DATA / "pages").glob("heldout-*.png"))[:5]


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 CPUs; the CLI runs join it by its address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of 3 generated pages and a 3-page PDF (a scan: one image per page)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("docs")
    (d / "pages").mkdir()
    for p in PAGES[:3]:
        (d / "pages" / p.name).write_bytes(p.read_bytes())
    ims = [Image.open(p).convert("RGB") for p in PAGES[2:5]]
    ims[0].save(d / "doc.pdf", save_all=True, append_images=ims[1:], resolution=72)
    return d / "pages", d / "doc.pdf"


def _read(*args, env=None):
    return subprocess.run([sys.executable, "-m", "foveate", "read", *map(str, args), *MODEL],
                          capture_output=True, timeout=600, env={**os.environ, **(env or {})})


def _ray(cluster, *args, env=None):
    # two actors of one CPU each, one llama.cpp thread each: the cluster's 2 CPUs
    return _read(*args, "--ray", cluster, "--ray-actors", "2", "--ray-cpus", "1", env=env)


def _files(out: Path) -> dict[str, bytes]:
    """The output files (the journal folder aside: its lines come in the order pages end)."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _journal_pages(out: Path, stem: str) -> list[int]:
    lines = (out / ".foveate" / f"{stem}.pages.jsonl").read_text().splitlines()
    return sorted(json.loads(ln)["page"] for ln in lines[1:])


@pytest.fixture(scope="module")
def local(docs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    r = _read(*docs, "-o", out, "-t", "2", "-q")
    assert r.returncode == 0, r.stderr.decode()
    return out


def test_ray_output_equals_the_local_run(cluster, docs, local, tmp_path):
    r = _ray(cluster, *docs, "-o", tmp_path / "ray", "--dataset", tmp_path / "pages.jsonl")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "Traceback" not in err
    files = _files(tmp_path / "ray")
    assert sorted(files) == ["doc.md", "heldout-00000.md", "heldout-00001.md",
                             "heldout-00002.md"]
    assert files == _files(local)   # byte for byte
    assert b"<!-- page 3 of 3: " in files["doc.md"]
    assert _journal_pages(tmp_path / "ray", "doc") == [1, 2, 3]
    # the dataset: one row per page, the text the output files hold
    rows = [json.loads(ln) for ln in (tmp_path / "pages.jsonl").read_text().splitlines()]
    assert sorted((Path(r["source"]).name, r["page"]) for r in rows) == [
        ("doc.pdf", 1), ("doc.pdf", 2), ("doc.pdf", 3), ("heldout-00000.png", 1),
        ("heldout-00001.png", 1), ("heldout-00002.png", 1)]
    doc_md = files["doc.md"].decode()
    for r in rows:
        assert r["error"] is None and r["text"].strip() in doc_md + "".join(
            v.decode() for v in files.values())
        assert json.loads(r["record"])["page"] == r["page"]


def test_a_ray_run_resumes_a_local_one_and_json_formats_agree(cluster, docs, local, tmp_path):
    """Pages 1-2 of the PDF read locally, the rest on Ray: the local run's files."""
    out = tmp_path / "out"
    assert _read(docs[1], "-o", out, "--pages", "1-2", "-t", "2", "-q").returncode == 0
    r = _ray(cluster, *docs, "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    assert b"2 of the pages asked for are already there (resume); 1 to read" in r.stderr
    assert _files(out) == _files(local)
    # nothing left: the rerun reads nothing and leaves the files as they are
    again = _ray(cluster, *docs, "-o", out)
    assert again.returncode == 0 and b"3 of the pages asked for are already there" in again.stderr
    assert _files(out) == _files(local)


def test_a_killed_worker_loses_only_its_page(cluster, docs, local, tmp_path):
    """The actor reading the PDF's page 2 exits once (after reading it, before returning
    it); the one reading heldout-00001 exits every time: every other page is written once,
    the PDF's output is the local run's, and heldout-00001 is reported after 2 attempts."""
    die = tmp_path / "die"
    die.mkdir()
    (die / "doc.pdf-2.die").touch()
    (die / "heldout-00001.png-1.always").touch()
    out = tmp_path / "out"
    r = _ray(cluster, *docs, "-o", out, "--ray-attempts", "2",
             env={"FOVEATE_RAY_TEST_DIE": str(die)})
    err = r.stderr.decode()
    assert (die / "doc.pdf-2.died").exists()   # it did die there
    assert r.returncode == 1, err
    assert "heldout-00001.png: WorkerError: the Ray worker reading it died on each of its 2 " \
           "attempts" in err
    assert "1 failed, 5 pages read" in err
    assert "Traceback" not in err, err   # Ray Data's own record of the dropped block: hidden
    # the attempts Ray really made, counted by the worker that died (not the flag's echo)
    assert (die / "heldout-00001.png-1.runs").read_text() == "died\n" * 2
    assert _journal_pages(out, "doc") == [1, 2, 3]   # page 2 once, though read twice
    assert _journal_pages(out, "heldout-00001") == []
    files = _files(out)
    for name in ("doc.md", "heldout-00000.md", "heldout-00002.md"):
        assert files[name] == _files(local)[name]


def test_with_np_a_page_that_always_kills_its_worker_costs_only_itself(cluster, docs, local,
                                                                       tmp_path):
    """-np 2: pages 1 and 2 of the PDF share a task, and page 1 kills its worker every time:
    the task is dropped after its attempts, its pages are read again one per task, page 2
    is written (the local run's text) and only page 1 is reported."""
    die = tmp_path / "die"
    die.mkdir()
    (die / "doc.pdf-1.always").touch()
    out = tmp_path / "out"
    r = _ray(cluster, docs[1], "-o", out, "-np", "2", "--ray-attempts", "2",
             env={"FOVEATE_RAY_TEST_DIE": str(die)})
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err, err
    assert "2 pages of tasks whose workers died: read again one per task" in err
    assert "doc.pdf page 1: WorkerError: the Ray worker reading it died on each of its 4 " \
           "attempts" in err and "1 failed, 2 pages read" in err
    assert _journal_pages(out, "doc") == [2, 3]
    assert (die / "doc.pdf-1.runs").read_text() == "died\n" * 4   # 2 tries, twice
    want = md_pages((local / "doc.md").read_text())
    assert md_pages((out / "doc.md").read_text()) == {k: v for k, v in want.items() if k != 1}


def test_bad_inputs_are_reported_per_page_as_locally(cluster, docs, tmp_path):
    from PIL import Image

    ims = [Image.open(p).convert("RGB") for p in PAGES[:3]]
    ims[0].save(tmp_path / "full.tiff", save_all=True, append_images=ims[1:] * 2)
    data = (tmp_path / "full.tiff").read_bytes()
    (tmp_path / "cut.tiff").write_bytes(data[: len(data) // 2])   # pages past the cut: corrupt
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf\n")
    (tmp_path / "notes.png").write_text("not an image")
    # a page too large for -c 1024: it opens on the driver and fails in the worker
    ims[0].resize((ims[0].width * 2, ims[0].height * 2)).save(tmp_path / "big.png")
    bad = [tmp_path / "cut.tiff", tmp_path / "garbage.pdf", tmp_path / "notes.png",
           tmp_path / "missing.png", tmp_path / "big.png", docs[1]]
    lo = _read(*bad, "-o", tmp_path / "lo", "-t", "2", "-q", "-c", "1024")
    ra = _ray(cluster, *bad, "-o", tmp_path / "ra", "-c", "1024")

    def summary(r):
        err = r.stderr.decode()
        assert "Traceback" not in err, err
        lines = err.splitlines()
        start = next(i for i, ln in enumerate(lines) if " failed, " in ln)
        return lines[start], sorted(lines[start + 1:])

    assert lo.returncode == ra.returncode == 1
    head, failures = summary(ra)
    assert (head, failures) == summary(lo)
    assert head == "foveate: 5 failed, 3 pages read:"
    assert any("big.png" in f and "more than n_ctx=1024" in f for f in failures), failures
    assert any("cut.tiff" in f and "corrupt" in f for f in failures), failures
    assert any("garbage.pdf" in f for f in failures) and any("missing.png" in f for f in failures)
    assert _files(tmp_path / "ra") == _files(tmp_path / "lo")


def test_read_dataset_gives_each_page_the_text_of_a_local_read(cluster, docs):
    import foveate.ray
    from foveate import Reader

    ds = foveate.ray.read_dataset([docs[1]], *MODEL_FILES, actors=2, cpus_per_actor=1)
    rows = sorted(ds.take_all(), key=lambda r: r["page"])
    assert [r["page"] for r in rows] == [1, 2, 3] and {r["n_pages"] for r in rows} == {3}
    with Reader(*MODEL_FILES, threads=2) as reader:
        local = [res.text for res in reader.read_document(str(docs[1]))]
    assert [r["text"] for r in rows] == local
    assert all(r["error"] is None and not r["fatal"] for r in rows)


def test_usage_errors_are_one_line(cluster, docs, tmp_path):
    r = _read(docs[1], "--ray", cluster)
    assert r.returncode == 2 and r.stderr.decode().strip() == \
        "foveate: --ray writes one file per document: add -o DIR"
    r = _read(docs[1], "-o", tmp_path / "o", "--dataset", tmp_path / "d")
    assert r.returncode == 2 and b"--dataset and --ray-* work with --ray" in r.stderr
    r = _read(docs[1], "-o", tmp_path / "o", "--ray", cluster, "--ray-attempts", "0")
    assert r.returncode == 2 and b"--ray-attempts must be at least 1, got 0" in r.stderr
    # a GPU per actor (-ngl's default) on a cluster without one: refused, not waited for
    r = _read(docs[1], "-o", tmp_path / "o", "--ray", cluster, "-ngl", "99")
    assert r.returncode == 2 and b"each actor asks for 1 GPU" in r.stderr, r.stderr
    # a model that does not load: the driver's check, one line, before any worker starts
    r = subprocess.run([sys.executable, "-m", "foveate", "read", str(docs[1]), "-o",
                        str(tmp_path / "o2"), "--ray", cluster, "-m", str(MODEL_FILES[1]),
                        "--mmproj", str(MODEL_FILES[1])], capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    assert "ModelError" in err


def test_methods_and_parallel_pages_travel_to_the_actors(cluster, docs, tmp_path):
    """Fixation, merging and -np 2 (two pages decoding together in an actor) give the PDF
    the local run's output with the same flags; the settings recorded are the same too."""
    flags = ["--fixation", "0.1", "--merge", "0.9", "-np", "2", "--format", "json"]
    lo = _read(docs[1], "-o", tmp_path / "lo", "-t", "2", "-q", *flags)
    assert lo.returncode == 0, lo.stderr.decode()
    ra = _ray(cluster, docs[1], "-o", tmp_path / "ra", *flags)
    assert ra.returncode == 0, ra.stderr.decode()
    assert b"--ray: 3 pages in " in ra.stderr and b"on 2 actors" in ra.stderr
    # 3 pages of -np 2 are 2 tasks: 8 actors asked for, 2 started (and said)
    r8 = _read(docs[1], "-o", tmp_path / "ra8", *flags, "--ray", cluster, "--ray-actors", "8",
               "--ray-cpus", "0.25", "--dataset", tmp_path / "parts")
    assert r8.returncode == 0, r8.stderr.decode()
    assert b"on 2 actors" in r8.stderr
    # --dataset as a folder: Parquet parts, one row per page, the JSON output's text
    rows = sorted(ray.data.read_parquet(str(tmp_path / "parts")).take_all(),
                  key=lambda r: r["page"])
    assert [r["page"] for r in rows] == [1, 2, 3] and all(r["error"] is None for r in rows)
    d8 = json.loads((tmp_path / "ra8" / "doc.json").read_text())
    assert [r["text"] for r in rows] == [p["text"] for p in d8["pages"]]

    def pages(out):   # the JSON output, timings aside (they differ between any two runs)
        d = json.loads((out / "doc.json").read_text())
        for p in d["pages"]:
            p.pop("wall_s")
            # and the attended mean: with -np it varies with the pages decoding beside this
            # one (local: pages 1+2, then 3 joins; Ray: 1+2 in one task, 3 in another)
            for k in ("encode_ms", "prefill_ms", "decode_ms", "tokens_per_s",
                      "fixation_attended_mean_over_layers"):
                p["stats"].pop(k)
        return d

    got, want = pages(tmp_path / "ra"), pages(tmp_path / "lo")
    assert got == want
    assert want["settings"]["fixation"] == 0.1 and want["settings"]["merge"] == "0.9"
    assert all(p["stats"]["fixation_ratio"] == 0.1 and p["stats"]["merge_keep_ratio"] < 1
               for p in got["pages"])


def test_without_ray_the_cli_says_which_extra(docs, tmp_path):
    """A machine without the ray extra (shadowed here by a `ray` that fails to import)."""
    (tmp_path / "shadow" / "ray").mkdir(parents=True)
    (tmp_path / "shadow" / "ray" / "__init__.py").write_text(
        "raise ImportError('No module named ray')\n")
    r = _read(docs[1], "-o", tmp_path / "o", "--ray",
              env={"PYTHONPATH": str(tmp_path / "shadow")})
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    assert "--ray needs Ray Data" in err and "pip install 'foveate[ray]'" in err


@pytest.mark.parametrize("flags, message", [
    (["--fixation", "2"], "fixation ratio must be in [0, 1], got 2.0"),
    (["--merge", "1.5"], "merge keep ratio must be in (0, 1], got 1.5"),
    (["--fixation", "0.1", "--focal-layers", "99"], "focal layers [99] out of range"),
    (["-b", "0"], "n_batch (-b) must be an integer >= 1, got 0"),
    (["--preset", "nope"], "unknown preset 'nope'"),
])
def test_settings_a_worker_would_refuse_are_refused_on_the_driver(docs, tmp_path, flags,
                                                                   message):
    """Before any cluster (no address is given, and none is started) and before -o is
    touched: one line, as a local run; the actors never load a model to find out."""
    r = _read(docs[1], "-o", tmp_path / "out", "--ray", *flags)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == [f"foveate: {err.strip()[len('foveate: '):]}"]
    assert message in err
    assert not (tmp_path / "out").exists()


def test_read_dataset_refuses_a_bad_setting_before_connecting(docs):
    import foveate.ray

    with pytest.raises(ValueError, match=r"fixation ratio must be in \[0, 1\]"):
        foveate.ray.read_dataset([docs[1]], *MODEL_FILES, fixation=2, address="127.0.0.1:1")


def test_a_dataset_path_that_cannot_be_written_is_refused(docs, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.jsonl").mkdir()
    for path, message in ((tmp_path / "file", "a file is there"),
                          (tmp_path / "folder.jsonl", "that is a folder"),
                          (tmp_path / "file" / "pages.jsonl", "cannot write there")):
        r = _read(docs[1], "-o", tmp_path / "out", "--ray", "--dataset", path)
        err = r.stderr.decode()
        assert r.returncode == 2 and "Traceback" not in err and message in err, err


class _BrokenReader:
    """A Reader whose batch breaks after its first page (a bug, not a FoveateError)."""

    def render_budget(self, max_tokens, dpi):
        return None

    def read_many(self, images, parallel, **kw):
        from foveate.errors import DocumentError

        it = iter(images)
        first = next(it)
        yield first if isinstance(first, Exception) else DocumentError("page one: refused")
        raise RuntimeError("the batch broke")


def test_a_batch_that_breaks_gives_its_pages_errors_not_a_dead_worker():
    """-np 2: an exception inside read_many is each unread page's error row (the driver
    reports it as that page's failure), not an exception that Ray retries as a crash."""
    import numpy as np
    from foveate.surface.ray.workers import PageReader

    class Doc:
        def page(self, number, budget):
            return f"image {number}"

        def close(self):
            pass

    pr = PageReader.__new__(PageReader)
    pr.reader, pr.load_error, pr.password = _BrokenReader(), None, None
    pr.read_kwargs, pr.doc = {"parallel": 2, "max_tokens": 64}, ("d.pdf", Doc())
    rows = pr({"source": np.array(["d.pdf"] * 3), "n_pages": np.array([3] * 3),
               "page": np.array([1, 2, 3])})
    assert rows["page"] == [1, 2, 3]
    assert rows["error_type"] == ["DocumentError", "RuntimeError", "RuntimeError"]
    assert rows["error"][1:] == ["the batch broke"] * 2 and rows["record"] == [None] * 3
