"""DocTags answers (granite-docling, SmolDocling) as markdown, JSON, HTML and raw DocTags,
read by docling-core (surface/pipeline/doctags.py), without a model: the conversion on its
own, the -o formats, and `foveate read` end to end with a stand-in Reader that has a
granite-docling's identity (engine.families.identify of its headers) and answers DocTags."""
from __future__ import annotations

import builtins
import json
from types import SimpleNamespace

import pytest
from PIL import Image

from conftest import md_pages

pytest.importorskip("docling_core")

# one page of DocTags as granite-docling writes it: a section heading, a paragraph, a list,
# an OTSL table (header cells, then two rows) and a picture, each with its location tokens
PAGE = (
    "<doctag><section_header_level_1><loc_59><loc_46><loc_301><loc_59>Quarterly report"
    "</section_header_level_1>\n"
    "<text><loc_59><loc_70><loc_441><loc_100>Sales grew in every region.</text>\n"
    "<unordered_list><list_item><loc_59><loc_110><loc_200><loc_120>North up four</list_item>\n"
    "<list_item><loc_59><loc_122><loc_200><loc_132>South up seven</list_item>\n"
    "</unordered_list>\n"
    "<otsl><loc_59><loc_140><loc_441><loc_200><ched>Region<ched>Sales<nl>"
    "<fcel>North<fcel>104<nl><fcel>South<fcel>107<nl></otsl>\n"
    "<picture><loc_59><loc_210><loc_300><loc_400></picture>\n"
    "</doctag>")
PAGE2 = ("<doctag><section_header_level_1><loc_10><loc_10><loc_200><loc_20>Outlook"
         "</section_header_level_1>\n<text><loc_10><loc_30><loc_400><loc_40>Flat next year."
         "</text>\n</doctag>")


def _ident(name: str, projector: str = "idefics3", arch: str = "llama"):
    from foveate.engine.families import identify

    return identify({"general.architecture": arch, "general.name": name}, projector)


def _record(page: int, text: str) -> dict:
    return {"page": page, "text": text, "image": {"width": 64, "height": 48}, "wall_s": 0.1,
            "stop_reason": "eos", "warnings": [], "stats": {}}


def _table_rows(md: str) -> list[list[str]]:
    """The cells of a markdown table's rows (the |---| separator left out)."""
    rows = []
    for ln in md.splitlines():
        if ln.startswith("|"):
            cells = [c.strip() for c in ln.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                rows.append(cells)
    return rows


def test_a_page_of_doctags_becomes_markdown():
    from foveate.surface.pipeline import doctags as D

    doc, why = D.document(PAGE)
    assert why == ""
    md = doc.export_to_markdown()
    lines = md.splitlines()
    heads = [ln for ln in lines if ln.startswith("#")]
    assert len(heads) == 1 and heads[0].lstrip("#") == " Quarterly report"
    assert "Sales grew in every region." in lines
    assert "- North up four" in lines and "- South up seven" in lines
    assert _table_rows(md) == [["Region", "Sales"], ["North", "104"], ["South", "107"]]
    assert "<!-- image -->" in lines                       # the picture's placeholder
    assert "loc_" not in md and "<" not in md.replace("<!-- image -->", "")


def test_the_record_gets_markdown_as_text_and_keeps_the_answer():
    from foveate.surface.pipeline import doctags as D

    rec = D.convert_record(_record(1, PAGE), D.MODEL)
    assert list(rec)[:3] == ["page", "text", "doctags"]     # the answer right after the text
    assert rec["doctags"] == PAGE
    assert rec["text"].startswith("## Quarterly report") or rec["text"].startswith("# Quarterly")
    assert "| North" in rec["text"] and rec["warnings"] == []


def test_an_answer_that_is_not_doctags_stays_as_written_with_a_warning():
    from foveate.surface.pipeline import doctags as D

    rec = D.convert_record(_record(1, "Just the words on the page."), D.MODEL)
    assert rec["text"] == "Just the words on the page."
    assert rec["doctags"] is None
    assert len(rec["warnings"]) == 1 and "not read as DocTags" in rec["warnings"][0]
    # an empty page's DocTags is DocTags: no text, no warning
    rec = D.convert_record(_record(1, "<doctag></doctag>"), D.MODEL)
    assert (rec["text"], rec["doctags"], rec["warnings"]) == ("", "<doctag></doctag>", [])


def test_which_models_answer_doctags():
    from foveate.surface.pipeline import doctags as D

    assert D.mode(_ident("granite-docling-258M")) == D.MODEL
    assert D.mode(_ident("SmolDocling-256M-preview")) == D.MODEL
    assert D.mode(_ident("SmolVLM-256M-Instruct")) == D.WRAPPER   # docling's base family
    assert D.mode(_ident("Qwen2.5-VL-3B", "qwen2.5vl_merger", "qwen2vl")) is None
    # WRAPPER: only an answer wrapped in <doctag> is read; any other is the record itself
    plain = _record(1, "Quarterly report")
    assert D.convert_record(plain, D.WRAPPER) is plain
    assert D.convert_record(_record(1, PAGE), D.WRAPPER)["doctags"] == PAGE
    assert D.convert_record(plain, None) is plain


def test_the_doctags_formats_of_a_document(tmp_path):
    from foveate.surface.pipeline import doctags as D
    from foveate.surface.pipeline.output import render

    pages = [D.convert_record(_record(2, PAGE2), D.MODEL),
             D.convert_record(_record(1, PAGE), D.MODEL),
             D.convert_record(_record(3, "a < b & plain"), D.MODEL)]
    # doctags: every answer byte for byte, in page order, under markdown's page lines
    raw = render("doctags", "r.pdf", 3, {}, pages)
    assert raw == (f"<!-- page 1 of 3: r.pdf -->\n\n{PAGE}\n\n<!-- page 2 of 3: r.pdf -->\n\n"
                   f"{PAGE2}\n\n<!-- page 3 of 3: r.pdf -->\n\na < b & plain\n\n")
    # markdown: the converted pages
    md = md_pages(render("markdown", "r.pdf", 3, {}, pages))
    assert md[2].splitlines()[0].lstrip("#") == " Outlook" and "loc_" not in md[1] + md[2]
    # json: the converted text, and the answer in `doctags`
    js = json.loads(render("json", "r.pdf", 3, {"k": 1}, pages))
    assert [(p["page"], p["doctags"]) for p in js["pages"]] == [(1, PAGE), (2, PAGE2), (3, None)]
    assert js["pages"][1]["text"].startswith("#") and "Flat next year." in js["pages"][1]["text"]
    # html: docling-core's page elements, the pages in order, a plain page as escaped text
    html = render("html", "r.pdf", 3, {}, pages)
    body = html[html.index("<body"):]
    assert "<html" in html and "</html>" in html
    assert "<li>North up four</li>" in body and "<li>South up seven</li>" in body
    for cell in ("Region", "Sales", "North", "104", "South", "107"):
        assert f">{cell}</t" in body
    heads = [body.index(s) for s in ("Quarterly report</h", "Outlook</h", "a &lt; b &amp; plain")]
    assert heads == sorted(heads)
    assert "loc_" not in body


def test_non_doctags_records_render_as_before():
    """A record without `doctags` (every other model) renders exactly as it always has."""
    from foveate.surface.pipeline.output import render

    pages = [_record(1, "<doctag>x</doctag> as text")]
    assert render("markdown", "a.png", 1, {}, pages) == \
        "<!-- page 1 of 1: a.png -->\n\n<doctag>x</doctag> as text\n\n"
    assert render("text", "a.png", 1, {}, pages) == \
        "=== page 1 of 1: a.png ===\n\n<doctag>x</doctag> as text\n\n"
    assert "doctags" not in json.loads(render("jsonl", "a.png", 1, {}, pages))


# --- `foveate read` end to end, with a Reader that answers DocTags ---------------------------

def _fake_reader(monkeypatch, name: str, answers: dict[int, str], projector="idefics3",
                 arch="llama"):
    """Replace the API's Reader (cli/read.py imports it when it runs) by one with the
    identity of `name`'s headers, answering answers[page] for every page."""
    import foveate.surface.api as api
    from foveate.engine.result import Result, Stats

    ident = _ident(name, projector, arch)
    made = []

    class StandIn:
        @staticmethod
        def check_settings(model, mmproj, **kw):
            return SimpleNamespace(family=ident)

        def __init__(self, model, mmproj, **kw):
            made.append(model)
            self.engine = SimpleNamespace(family=ident)

        def read_document(self, doc, pages=None, **kw):
            for p in pages:
                yield Result(text=answers[p], stats=Stats(stop_reason="eos"), image_size=(64, 48),
                             source=doc.name, page=p, n_pages=doc.n_pages, image=doc.name)

    monkeypatch.setattr(api, "Reader", StandIn)
    return made


def _read(*args) -> int:
    from foveate.surface.cli import main

    return main(["read", *map(str, args), "-m", "granite-docling-258M.gguf",
                 "--mmproj", "mmproj.gguf", "-q"])


@pytest.fixture
def pages(tmp_path):
    one = tmp_path / "page.png"
    Image.new("RGB", (64, 48), "white").save(one)
    two = tmp_path / "scan.tif"
    frames = [Image.new("RGB", (64, 48), c) for c in ("white", "grey")]
    frames[0].save(two, save_all=True, append_images=frames[1:])
    return one, two


def test_cli_read_converts_doctags_to_markdown_on_stdout(monkeypatch, capsys, pages):
    _fake_reader(monkeypatch, "granite-docling-258M", {1: PAGE})
    assert _read(pages[0]) == 0
    out = capsys.readouterr().out
    assert "# Quarterly report" in out and "- North up four" in out
    assert ["North", "104"] in _table_rows(out) and "loc_" not in out


def test_cli_read_writes_every_format_from_doctags(monkeypatch, capsys, pages, tmp_path):
    one, two = pages
    _fake_reader(monkeypatch, "SmolDocling-256M-preview", {1: PAGE, 2: PAGE2})
    out = tmp_path / "out"
    for fmt in ("markdown", "json", "html", "doctags"):
        assert _read(one, two, "-o", out, "--format", fmt) == 0, capsys.readouterr().err
    md = md_pages((out / "scan.md").read_text())
    assert list(md) == [1, 2] and md[1].startswith("#") and md[2].lstrip("#").startswith(" Outlook")
    assert ["South", "107"] in _table_rows(md[1])
    js = json.loads((out / "page.json").read_text())
    assert js["pages"][0]["doctags"] == PAGE and "- South up seven" in js["pages"][0]["text"]
    html = (out / "scan.html").read_text()
    assert html.index("Quarterly report</h") < html.index("Outlook</h")
    assert (out / "scan.doctags").read_text() == (
        f"<!-- page 1 of 2: {two} -->\n\n{PAGE}\n\n<!-- page 2 of 2: {two} -->\n\n{PAGE2}\n\n")
    # --json on stdout: the same record
    capsys.readouterr()
    assert _read(one, "--json") == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["doctags"] == PAGE and rec["text"].startswith("#")


def test_cli_read_warns_and_keeps_an_answer_that_is_not_doctags(monkeypatch, capsys, pages):
    _fake_reader(monkeypatch, "granite-docling-258M", {1: "I cannot read this page."})
    assert _read(pages[0]) == 0
    cap = capsys.readouterr()
    assert cap.out == "I cannot read this page.\n"
    assert "not read as DocTags" in cap.err


def test_cli_read_leaves_other_models_alone(monkeypatch, capsys, pages, tmp_path):
    """A model that does not answer DocTags: its text untouched, even one that looks like
    DocTags, and no `doctags` field; --format html / doctags refused before it loads."""
    made = _fake_reader(monkeypatch, "Qwen2.5-VL-3B", {1: PAGE}, "qwen2.5vl_merger", "qwen2vl")
    assert _read(pages[0]) == 0
    assert capsys.readouterr().out == PAGE + "\n"
    assert _read(pages[0], "--json") == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["text"] == PAGE and "doctags" not in rec
    n = len(made)
    for fmt in ("html", "doctags"):
        assert _read(pages[0], "-o", tmp_path / "o", "--format", fmt) == 2
        assert f"--format {fmt} is for models that answer in DocTags" in capsys.readouterr().err
    assert len(made) == n                       # refused before a model was loaded
    assert not (tmp_path / "o").exists()


def _without_docling(monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "docling_core" or name.startswith("docling_core."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_without_docling_core_a_doctags_model_is_one_clear_error(monkeypatch, capsys, pages):
    from foveate.surface.pipeline import doctags as D

    made = _fake_reader(monkeypatch, "granite-docling-258M", {1: PAGE})
    _without_docling(monkeypatch)
    with pytest.raises(D.DoclingMissing, match=r"pip install 'foveate\[docling\]'"):
        D.require()
    with pytest.raises(ImportError):            # an ImportError for API callers
        D.convert_record(_record(1, PAGE), D.MODEL)
    assert _read(pages[0]) == 2
    cap = capsys.readouterr()
    assert cap.err == ("foveate: DocTags output needs docling-core: "
                       "pip install 'foveate[docling]'\n")
    assert cap.out == "" and made == []          # before the model loads, nothing read
    # a model of docling's base family needs it only for an answer wrapped in <doctag>
    rec = D.convert_record(_record(1, PAGE), D.WRAPPER)
    assert rec["text"] == PAGE and "foveate[docling]" in rec["warnings"][0]


def test_a_granite_docling_pair_is_told_by_its_headers(tmp_path, pages):
    """The real path: a random-weight granite-docling pair (instruments/shapes/idefics3.py, the
    converted model's metadata) read by the CLI; its identity, from the GGUF headers, makes
    the page a DocTags page (what random weights write is whatever it is: converted, or kept
    with a warning)."""
    import subprocess
    import sys

    from foveate.instruments.shapes import idefics3 as I

    model, mmproj = I.write_pair(tmp_path / "g", "granite-docling-258m", layers=1, vocab=512)
    r = subprocess.run([sys.executable, "-m", "foveate", "read", str(pages[0]), "-m", str(model),
                        "--mmproj", str(mmproj), "-n", "8", "-t", "2", "--json", "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (rec,) = json.loads(r.stdout)
    assert "doctags" in rec
    if rec["doctags"] is None:
        assert any("not read as DocTags" in w for w in rec["warnings"])
    else:
        from foveate.surface.pipeline import doctags as D
        assert rec["text"] == D.document(rec["doctags"])[0].export_to_markdown()
