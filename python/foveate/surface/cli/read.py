"""`foveate read INPUT...`: documents in (images, PDFs, multi-page TIFFs, folders, stdin),
text out (stdout, or one file per document with -o), a progress bar on stderr.

This module only parses the flags and wires the pipeline's stages (surface/pipeline):
the plan of the inputs' pages, a reader (this machine's Reader, or Ray actors with --ray),
and the sinks (stdout text or --json, -o files, --dataset, --trace). One bad input or page
does not stop the others (pipeline/run.py).
"""
from __future__ import annotations

import re
from pathlib import Path

from . import flags as F


def add_parser(sub) -> None:
    r = sub.add_parser("read", help="transcribe images, PDFs, multi-page TIFFs or folders",
                       formatter_class=F.HELP)
    # "*", not "+": `--ray scans/` takes an input as its ADDRESS, and _ray_address gives it back
    r.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image, PDF, multi-page TIFF, folder of them, or - (stdin)")
    F.model_args(r, ctx_default=None)
    r.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                   help="decode up to N pages together (continuous batching; -c is shared, "
                        "its default is 4096 per page)")
    r.add_argument("-p", "--prompt", default=None,
                   help="instruction (default: the --preset's prompt)")
    F.preset_arg(r)
    r.add_argument("--no-repetition-guard", action="store_true",
                   help="let a looping output run to -n (the guard stops it and cuts the repeats)")
    r.add_argument("-n", "--n-predict", type=int, default=1024, help="max tokens per page")
    r.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy)")
    r.add_argument("--top-k", type=int, default=40, help="sampling: keep the k likeliest tokens")
    r.add_argument("--top-p", type=float, default=0.95, help="sampling: nucleus probability")
    r.add_argument("--min-p", type=float, default=0.05, help="sampling: drop tokens below p x the best")
    r.add_argument("--repeat-penalty", type=float, default=1.0, help="penalty on repeated tokens (1 = off)")
    r.add_argument("-s", "--seed", type=int, default=0xF0FEA7E, help="sampling seed")
    r.add_argument("--json", action="store_true", help="JSON on stdout: text and stats per page")
    r.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="write one file per input document into DIR, page by page; a rerun "
                        "resumes (skips pages already written)")
    r.add_argument("--format", default="markdown",
                   choices=["markdown", "text", "json", "jsonl", "html", "doctags"],
                   help="output file format with -o (schema: docs/output-format.md); html and "
                        "doctags (the raw answer): models that answer in DocTags "
                        "(granite-docling, SmolDocling), whose answers are converted to "
                        "markdown by docling-core (pip install 'foveate[docling]')")
    r.add_argument("--overwrite", action="store_true",
                   help="with -o: read every page again, even if written before")
    r.add_argument("--pages", default=None, metavar="RANGES",
                   help="pages of each multi-page input, 1-based: 1-3,7,10- (default: all)")
    r.add_argument("--recursive", action="store_true", help="descend into subfolders of folder inputs")
    r.add_argument("--password", default=None, help="password of encrypted PDFs")
    r.add_argument("--dpi", type=float, default=None,
                   help="render PDF pages at this resolution (default: a scan's own, else the "
                        "size that fits the image-token budget)")
    r.add_argument("--image-min-tokens", type=int, default=None, metavar="N",
                   help="at least N image tokens per page, as llama.cpp (default: the projector's)")
    r.add_argument("--image-max-tokens", type=int, default=None, metavar="N",
                   help="at most N image tokens per page, as llama.cpp (default: the projector's; "
                        "PDF pages render to fit what -c leaves)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.add_argument("--draft", default="none", metavar="auto|pdf|ocr|self|none|PATH",
                   help="draft-verified decoding (greedy; the text does not change): pdf, the "
                        "page's text layer; ocr, Tesseract (apt install tesseract-ocr); auto, the text "
                        "layer if the page has one, else ocr if installed, else self; self, the "
                        "output's own repeats; PATH, a text file of the pages' text; none "
                        "(README: Drafts)")
    r.add_argument("--trace", default=None, metavar="OUT.gif|OUT.png",
                   help="with --fixation and one page: draw where the model looked (.gif: the "
                        "reading path, step by step; .png: a heat map)")
    F.fixation_args(r)
    F.merge_args(r)
    _ray_args(r)
    r.set_defaults(fn=cmd_read)


def _ray_args(p) -> None:
    g = p.add_argument_group("many machines (pip install 'foveate[ray]'; README: many machines)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="read the pages on a Ray cluster: ADDRESS (auto, host:6379, "
                        "ray://host:10001), else RAY_ADDRESS, else a local cluster; needs -o")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="actors, each holding one model (default: as many as the cluster's "
                        "CPUs or GPUs hold)")
    g.add_argument("--ray-cpus", type=float, default=None, metavar="C",
                   help="CPUs per actor (default: -t, else 1); its threads, unless -t says")
    g.add_argument("--ray-gpus", type=float, default=None, metavar="G",
                   help="GPUs per actor (default: 1 with -ngl, else 0)")
    g.add_argument("--ray-attempts", type=int, default=3, metavar="N",
                   help="tries at a page whose worker dies (a killed worker's page is read "
                        "again; one that kills it every time is reported after N)")
    g.add_argument("--dataset", default=None, metavar="PATH",
                   help="with --ray: also every page as a row, PATH.jsonl (JSON Lines) or a "
                        "folder of Parquet parts")


# what `--ray ADDRESS` may be; anything else after --ray is an input (`--ray scans/`)
RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[A-Za-z0-9_.-]+:\d+)$")


def _ray_address(a) -> None:
    """--ray takes an optional ADDRESS: a value that is no address goes back to the inputs."""
    if a.ray and not RAY_ADDRESS.match(a.ray):
        a.inputs.append(a.ray)
        a.ray = ""
    if a.ray is None and (a.dataset or a.ray_actors or a.ray_cpus or a.ray_gpus):
        raise ValueError("--dataset and --ray-* work with --ray")
    if not a.inputs:
        raise ValueError("read: give at least one INPUT (image, PDF, folder, or -)")


def cmd_read(a) -> int:
    _ray_address(a)
    if a.parallel < 1:
        raise ValueError(f"-np must be at least 1, got {a.parallel}")
    if a.ctx_size is None:   # 4096 cells per page in flight
        a.ctx_size = 4096 * a.parallel
    if a.trace and a.parallel > 1:
        raise ValueError("--trace reads one page: leave -np at 1")
    kw = F.engine_kwargs(a)
    kw.update(image_min_tokens=a.image_min_tokens, image_max_tokens=a.image_max_tokens,
              parallel=a.parallel, preset=a.preset)
    return read(a, kw)


def _draft(a):
    """--draft as Reader.read_document takes it: None (off), a source's name, or the text file
    as a DraftText (its text drafts every page)."""
    from ...inputs.draft_sources import MODES, DraftText, check_mode

    if a.draft in ("none", None):
        return None
    if a.draft in MODES:
        check_mode(a.draft)
        return a.draft
    p = Path(a.draft)
    if not p.is_file():
        raise ValueError(f"--draft {a.draft}: no such text file (or: {', '.join(MODES)})")
    return DraftText(p.read_bytes().decode("utf-8", errors="replace"), "text")


def _check(a) -> None:
    """Refusals of flag combinations, before any input is opened."""
    if a.ray is not None:
        from ..ray.driver import check_args
        check_args(a)
    if a.inputs.count("-") > 1:
        raise ValueError("stdin (-) can be given once")
    if a.out is None and a.format != "markdown" and not a.json:
        raise ValueError("--format needs -o DIR (stdout takes text, or --json)")
    if a.trace:
        if Path(a.trace).suffix.lower() not in (".gif", ".png"):
            raise ValueError(f"--trace writes .gif or .png, not {a.trace!r}")
        if not Path(a.trace).resolve().parent.is_dir():
            raise ValueError(f"--trace {a.trace}: folder {Path(a.trace).parent} does not exist")
        if not a.fixation:
            raise ValueError("--trace draws fixation's selections: add --fixation 0.05")


def read(a, reader_kwargs: dict) -> int:
    """inputs -> pages -> a reader -> sinks."""
    from ..api import Reader
    from ..pipeline import sinks as S
    from ..pipeline.local import LocalReader
    from ..pipeline.plan import plan_documents
    from ..pipeline.progress import Progress
    from ..pipeline.run import report_unopened, run_pipeline

    sampling = dict(temperature=a.temp, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                    repeat_penalty=a.repeat_penalty, seed=a.seed,
                    repetition_guard=not a.no_repetition_guard)
    _check(a)
    draft = _draft(a)
    if draft is not None:
        sampling["draft"] = draft
    plan = plan_documents(a.inputs, a.pages, a.recursive, a.password)
    failures = report_unopened(plan.unopened)
    if a.trace and plan.n_pages_asked != 1:
        raise ValueError("--trace draws one page: give one image, or one page with --pages N")
    # what the model is, from its headers (nothing loads): whether it answers in DocTags;
    # the workers of --ray load the model, and what it would refuse is refused here, once
    checked = Reader.check_settings(a.model, a.mmproj, **reader_kwargs)
    doctags = _doctags(a, checked.family)
    progress = Progress(a.quiet)
    if a.ray is None:
        stage = LocalReader(Reader(a.model, a.mmproj, **reader_kwargs), plan, progress,
                            prompt=a.prompt, max_tokens=a.n_predict, dpi=a.dpi,
                            trace=bool(a.trace), parallel=a.parallel, sampling=sampling)
    else:
        from ..ray.driver import RayReader
        stage = RayReader(a, reader_kwargs, sampling, progress)
    sinks, files = [], None
    if a.out:   # refuses a changed setting before anything is read
        files = S.FilesOut(a.out, plan, a.format, _settings(a), a.overwrite)
        sinks.append(files)
    elif a.json:
        sinks.append(S.JsonOut(plan.unopened))
    else:
        multi = len(plan.documents) > 1 or any(len(d.pages) > 1 for d in plan.documents)
        sinks.append(S.TextOut(progress, multi))
    if a.dataset:   # a path it cannot write fails before the cluster starts
        sinks.append(S.DatasetOut(a.dataset))
    if a.trace:
        sinks.append(S.TraceOut(a.trace, progress))
    jobs = files.todo(plan, progress.note) if files else plan.jobs()
    progress.start(len(jobs))
    pages = stage.read(jobs)
    if doctags is not None:   # each page's DocTags as markdown, before every sink
        from ..pipeline.doctags import convert_pages
        pages = convert_pages(pages, doctags)
    return run_pipeline(pages, sinks, progress, failures)


def _doctags(a, family) -> str | None:
    """Whether the model answers in DocTags (pipeline/doctags.py's mode), checked with what
    it needs: --format html and doctags are for such models only, and docling-core must be
    importable before a page is read (a one-line error, not a failure per page)."""
    from ..pipeline import doctags as D

    how = D.mode(family)
    if how is None and a.format in ("html", "doctags"):
        raise ValueError(f"--format {a.format} is for models that answer in DocTags "
                         f"(granite-docling, SmolDocling); {Path(a.model).name} is "
                         f"{family.label if family else 'not one'}")
    if how == D.MODEL or (how is not None and a.format == "html"):
        try:
            D.require()
        except D.DoclingMissing as e:
            raise ValueError(str(e)) from None
    return how


def _settings(a) -> dict:
    """What decides a page's text: a rerun with other settings must not resume."""
    from ...engine.focal_store import fingerprint

    files = {}
    for key in ("model", "mmproj"):
        p = getattr(a, key)
        files[key] = {"name": Path(p).name, "fingerprint": fingerprint(p)} if p and Path(p).is_file() else p
    return {"model": files["model"], "mmproj": files["mmproj"], "prompt": a.prompt,
            "n_predict": a.n_predict, "temp": a.temp, "top_k": a.top_k, "top_p": a.top_p,
            "min_p": a.min_p, "repeat_penalty": a.repeat_penalty, "seed": a.seed,
            "preset": a.preset, "repetition_guard": not a.no_repetition_guard,
            "ctx_size": a.ctx_size, "fixation": a.fixation, "fixation_k_min": a.fixation_k_min,
            "focal_layers": a.focal_layers, "fixation_refresh": a.fixation_refresh,
            "fixation_dilation": a.fixation_dilation,
            "fixation_sample": a.fixation_sample, "merge": a.merge,
            "merge_score": a.merge_score, "merge_positions": a.merge_positions,
            "dpi": a.dpi, "image_min_tokens": a.image_min_tokens,
            "image_max_tokens": a.image_max_tokens}
