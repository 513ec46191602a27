"""`foveate read INPUT...`: documents in (images, PDFs, multi-page TIFFs, folders, stdin),
text out (stdout, or one file per document with -o), a progress bar on stderr.

One bad input or page does not stop the others: each failure is reported on stderr with its
file and page, a summary ends the run, and the exit code is 1 (0 when every page was read).

Progress: tqdm, because it is already installed with foveate (gguf depends on it), writes to
stderr only, disables itself cleanly, and notes printed through tqdm.write do not tear the bar.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import FoveateError


def _settings(a) -> dict:
    """What decides a page's text: a rerun with other settings must not resume."""
    from ..engine.focal_store import fingerprint

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


class _Progress:
    """Pages done of total, pages per minute, ETA and the current file, on stderr."""

    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if total > 1 and not quiet and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="page", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} pages "
                                       "[{elapsed}<{remaining}{postfix}]")
        self.name = ""
        self.t0 = time.perf_counter()
        self.n = 0

    def note(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def out(self, text: str) -> None:
        """A page's text on stdout, without tearing the bar when both are the terminal."""
        if self.bar is not None and sys.stdout.isatty():
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)

    def current(self, name: str) -> None:
        self.name = Path(name).name
        self._postfix()

    def step(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self._postfix()
            self.bar.update(n)

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(" ".join(x for x in (self._ppm(), self.name) if x),
                                     refresh=False)

    def _ppm(self) -> str:
        dt = time.perf_counter() - self.t0
        return f"{self.n / dt * 60:.1f} pages/min" if self.n and dt > 0 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(a, reader_kwargs: dict) -> int:
    from ..inputs.documents import expand_inputs, open_document, parse_pages
    from .api import Reader
    from .output import JSON_SCHEMA, DocumentOutput, OutputError, output_stems, page_record

    sampling = dict(temperature=a.temp, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p,
                    repeat_penalty=a.repeat_penalty, seed=a.seed,
                    repetition_guard=not a.no_repetition_guard)
    if a.ray is not None:
        from . import ray_read
        ray_read.check_args(a)
    if a.inputs.count("-") > 1:
        raise ValueError("stdin (-) can be given once")
    if a.out is None and a.format != "markdown" and not a.json:
        raise ValueError("--format needs -o DIR (stdout takes text, or --json)")
    if a.pages:
        parse_pages(a.pages, 1 << 30, "--pages", check_only=True)   # the syntax, up front
    inputs = expand_inputs(a.inputs, a.recursive)
    if a.trace:
        if Path(a.trace).suffix.lower() not in (".gif", ".png"):
            raise ValueError(f"--trace writes .gif or .png, not {a.trace!r}")
        if not Path(a.trace).resolve().parent.is_dir():
            raise ValueError(f"--trace {a.trace}: folder {Path(a.trace).parent} does not exist")
        if not a.fixation:
            raise ValueError("--trace draws fixation's selections: add --fixation 0.05")
    failures: list[str] = []
    stdin_data = sys.stdin.buffer.read() if "-" in inputs else None

    def opened(item):
        return open_document(stdin_data if item == "-" else item, password=a.password,
                             name="<stdin>" if item == "-" else None, recursive_hint=a.recursive)

    def identity(item) -> dict:
        """What the input is, whatever path names it: size and a content fingerprint."""
        import hashlib
        data = stdin_data if item == "-" else Path(item).read_bytes()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    # first pass: page counts (for the bar and the page ranges); bad documents reported here
    plan, open_errors = [], []
    for item in inputs:
        try:
            doc = opened(item)
            try:
                # --pages picks pages of PDFs and multi-page images; a plain image is one page
                numbers = parse_pages(a.pages, doc.n_pages, doc.name) \
                    if doc.n_pages > 1 or doc.kind == "pdf" else [1]
            finally:
                n_pages = doc.n_pages
                doc.close()
            plan.append((item, n_pages, numbers))
        except FoveateError as e:
            failures.append(str(e))
            print(f"foveate: {type(e).__name__}: {e}", file=sys.stderr)
            if a.json and not a.out:
                open_errors.append({"schema": "foveate.document/1", "source": item,
                                    "error": str(e), "error_type": type(e).__name__})

    if a.trace and sum(len(n) for _, _, n in plan) != 1:
        raise ValueError("--trace draws one page: give one image, or one page with --pages N")
    if a.ray is None:
        reader = Reader(a.model, a.mmproj, **reader_kwargs)
    else:   # the workers load the model; what it would refuse is refused here, once
        Reader.check_settings(a.model, a.mmproj, **reader_kwargs)
    settings = _settings(a) if a.out else {}
    stems = output_stems([item for item, _, _ in plan])
    outputs = {}
    for item, n_pages, _ in plan:   # refuse a changed setting before reading anything
        if a.out:
            try:
                outputs[item] = DocumentOutput(a.out, stems[item], "<stdin>" if item == "-" else item,
                                               n_pages, a.format, settings, a.overwrite,
                                               identity(item))
            except OutputError as e:
                raise ValueError(str(e)) from None
    todo = sum(len([p for p in numbers if not (item in outputs and p in outputs[item].done)])
               for item, _, numbers in plan)
    progress = _Progress(todo, a.quiet)
    results, first, n_read = [], True, 0
    multi = len(plan) > 1 or any(len(n) > 1 for _, _, n in plan)
    try:
        if a.ray is None:
            pages = _pages(reader, plan, outputs, a, sampling, opened, progress)
        else:   # the same pages, read by Ray actors; each comes back as its page record
            pages = ray_read.pages(a, reader_kwargs, sampling,
                                   list(_todo(plan, outputs, progress)), progress)
        for item, name, n_pages, number, res in pages:
            out = outputs.get(item)
            where = name if n_pages == 1 else f"{name} page {number}"
            if isinstance(res, FoveateError):   # one bad page does not stop the others
                failures.append(str(res) if name in str(res) else f"{where}: {res}")
                progress.note(f"foveate: {where}: {type(res).__name__}: {res}")
                if a.json and not out:
                    results.append({"schema": JSON_SCHEMA, "source": name, "n_pages": n_pages,
                                    "page": number, "error": str(res),
                                    "error_type": type(res).__name__})
                progress.step()
                continue
            n_read += 1
            rec = res if isinstance(res, dict) else None   # a Ray worker's page record
            for note in (rec["warnings"] if rec else res.warnings):
                progress.note(f"foveate: {where}: {note}")
            if out:
                out.add(rec or page_record(res))
            elif a.json:   # the schema of docs/output-format.md, a page per entry
                results.append({"schema": JSON_SCHEMA, "source": res.source,
                                "n_pages": res.n_pages, **page_record(res)})
            else:
                progress.out(("\n" if not first else "")
                             + (f"==> {res.image} <==\n" if multi else "") + res.text)
                first = False
            if a.trace:   # after the text is safe: a failed picture does not lose the page
                from .trace_picture import save as save_trace
                try:
                    progress.note(f"foveate: trace: {save_trace(res.trace, a.trace)}")
                except (OSError, ValueError) as e:
                    failures.append(f"--trace {a.trace}: {e}")
                    progress.note(f"foveate: --trace {a.trace}: {e}")
            progress.step()
        for out in outputs.values():
            out.write()   # a document whose pages were all done before still gets its file
    finally:
        progress.close()
    if a.json and not a.out:
        json.dump(open_errors + results, sys.stdout, indent=2, ensure_ascii=False)
        print()
    if failures:
        print(f"foveate: {len(failures)} failed, {n_read} page{'s' if n_read != 1 else ''} read:",
              file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


def _todo(plan, outputs, progress):
    """(item, page number) of every page to read, in order; notes the resumed documents."""
    for item, n_pages, numbers in plan:
        out = outputs.get(item)
        skip = out.done if out else set()
        if skip & set(numbers):
            progress.note(f"foveate: {out.path}: {len(skip & set(numbers))} of the pages asked "
                          f"for are already there (resume); {len(set(numbers) - skip)} to read")
        for number in numbers:
            if number not in skip:
                yield item, n_pages, number


def _pages(reader, plan, outputs, a, sampling, opened, progress):
    """(item, document name, n_pages, page number, Result or FoveateError), in order: one
    page at a time (-np 1), or up to -np pages decoding together (Reader.read_many)."""
    jobs = list(_todo(plan, outputs, progress))
    docs: dict = {}

    def doc_of(item):   # the document a job needs, the previous one closed (jobs are in order)
        if item not in docs:
            for d in docs.values():
                d.close()
            docs.clear()
            docs[item] = opened(item)
            progress.current(item)
        return docs[item]

    try:
        if a.parallel <= 1:
            for item, n_pages, number in jobs:
                try:
                    doc = doc_of(item)
                    (res,) = list(reader.read_document(doc, pages=[number], prompt=a.prompt,
                                                       max_tokens=a.n_predict, dpi=a.dpi,
                                                       trace=bool(a.trace), **sampling))
                except FoveateError as e:
                    res = e
                yield item, docs[item].name if item in docs else item, n_pages, number, res
            return
        budget = reader.render_budget(a.n_predict, a.dpi)
        names = {}

        def images():
            for item, _, number in jobs:
                try:
                    doc = doc_of(item)
                    names[item] = doc.name
                    yield doc.page(number, budget)
                except FoveateError as e:
                    yield e

        for (item, n_pages, number), res in zip(jobs, reader.read_many(
                images(), prompt=a.prompt, max_tokens=a.n_predict, parallel=a.parallel,
                **sampling)):
            name = names.get(item, item)
            if not isinstance(res, FoveateError):
                res.source, res.page, res.n_pages = name, number, n_pages
                res.image = f"{name}#page={number}" if n_pages > 1 else name
            yield item, name, n_pages, number, res
    finally:
        for d in docs.values():
            d.close()
