"""`foveate read -o DIR`: one output file per input document, written page by page, resumable.

Each page read is appended to a journal (`DIR/.foveate/NAME.pages.jsonl`, flushed and synced
before the next page starts), and the output file (`DIR/NAME.md|.txt|.json|.jsonl`, and
`.html|.doctags`) is then rewritten from the journal in page order (to a temporary file,
renamed over the old one), so an interruption loses at most the page in progress and the
file on disk is always whole.
A rerun with the same DIR reads the journal and skips the pages in it; the journal's header
records the model files and settings, and a rerun with other ones is refused unless
`overwrite` (which starts the document afresh).

Formats: markdown and text (pages separated by a line naming the page), json (the run's
settings and a list of pages), jsonl (one line per page). JSON_SCHEMA names the schema.
A model that answers in DocTags (doctags.py) adds two: html (docling-core's HTML of the
document) and doctags (each page's answer as the model wrote it, under markdown's page lines);
its pages' `text` is then docling-core's markdown, and the answer is the record's `doctags`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

JSON_SCHEMA = "foveate.document/1"
FORMATS = {"markdown": ".md", "text": ".txt", "json": ".json", "jsonl": ".jsonl",
           "html": ".html", "doctags": ".doctags"}   # the last two: DocTags models only


class OutputError(ValueError):
    """An output folder that cannot be used as asked (settings changed without --overwrite)."""


def page_record(res) -> dict:
    """One page for the journal and the JSON formats. Field names say what they hold."""
    st = res.stats
    rec = {
        "page": res.page or 1,
        "text": res.text,
        "image": {"width": res.image_size[0], "height": res.image_size[1]},
        "wall_s": round(res.wall_s, 4),
        "stop_reason": st.stop_reason,
        "warnings": list(res.warnings),
        "stats": {
            "image_tokens": st.image_tokens,                  # from the projector
            "image_tokens_kept": st.image_tokens_kept,                      # after merging
            "merge_keep_ratio": st.merge_ratio,
            "prompt_tokens": st.prompt_tokens,
            "tokens_generated": st.tokens_generated,
            "encode_ms": round(st.encode_ms, 3),
            "prefill_ms": round(st.prefill_ms, 3),
            "decode_ms": round(st.decode_ms, 3),
            "tokens_per_s": round(st.tokens_per_s, 3),
            "fixation_ratio": st.fixation_ratio,
            # the focal layer's top-k per decode step (what --fixation 0.05 asks for)
            "fixation_selected_per_step": st.visual_tokens_selected if st.fixation_ratio else None,
            # image tokens attended per step, mean over every layer (focal layers attend all)
            "fixation_attended_mean_over_layers": st.visual_tokens_attended if st.fixation_ratio else None,
            "focal_layers": list(st.focal_layers),
            # why fixation, though asked for, did not run (a quantized KV cache on a GPU)
            "fixation_off": st.fixation_off or None,
            # draft-verified decoding (null: no draft): what drafted, proposed, accepted
            "draft_source": st.draft_source or None,
            "draft_tokens": st.draft_tokens if st.draft_source else None,
            "draft_accepted": st.draft_accepted if st.draft_source else None,
            "draft_steps": st.draft_steps if st.draft_source else None,
            "draft_unsettled": st.draft_unsettled if st.draft_source and st.fixation_ratio else None,
            "draft_ms": round(st.draft_ms, 3) if st.draft_source else None,
        },
    }
    return rec


def _page_header(rec: dict, source: str, n_pages: int, fmt: str) -> str:
    where = f"page {rec['page']} of {n_pages}: {source}"
    return f"=== {where} ===" if fmt == "text" else f"<!-- {where} -->"


def render(fmt: str, source: str, n_pages: int, settings: dict, pages: list[dict]) -> str:
    pages = sorted(pages, key=lambda r: r["page"])
    if fmt in ("markdown", "text"):
        return "".join(f"{_page_header(r, source, n_pages, fmt)}\n\n{r['text'].rstrip()}\n\n"
                       for r in pages)
    if fmt == "doctags":
        from .doctags import raw
        return "".join(f"{_page_header(r, source, n_pages, fmt)}\n\n{raw(r).rstrip()}\n\n"
                       for r in pages)
    if fmt == "html":
        from .doctags import html
        return html(pages, source)
    if fmt == "json":
        return json.dumps({"schema": JSON_SCHEMA, "source": source, "n_pages": n_pages,
                           "settings": settings, "pages": pages}, indent=1, ensure_ascii=False) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps({"schema": JSON_SCHEMA, "source": source, "n_pages": n_pages,
                                   **r}, ensure_ascii=False) + "\n" for r in pages)
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


class DocumentOutput:
    """The output of one input document in DIR, with its journal."""

    def __init__(self, out_dir: str | os.PathLike, stem: str, source: str, n_pages: int,
                 fmt: str, settings: dict, overwrite: bool = False, identity: dict | None = None):
        """identity: what the input is (its size and a fingerprint of its content): a rerun
        resumes only the same document, whatever path it is given by."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
        self.dir = Path(out_dir)
        self.path = self.dir / (stem + FORMATS[fmt])
        self.journal = self.dir / ".foveate" / (stem + ".pages.jsonl")
        self.source, self.n_pages, self.fmt, self.settings = source, n_pages, fmt, settings
        self.pages: list[dict] = []
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        header = {"schema": JSON_SCHEMA, "source": source, "n_pages": n_pages,
                  "input": identity or {}, "settings": settings}
        if self.journal.exists() and not overwrite:
            old, done = self._read_journal()
            # a journal without pages (a run stopped before its first page) holds nothing to
            # keep consistent with: this run starts it afresh, whatever its settings
            if old is not None and done and (old.get("input") or {}) != (identity or {}):
                raise OutputError(f"{self.path}: an earlier run wrote it from another document "
                                  f"of that name ({old.get('source')}, {old.get('n_pages')} pages); "
                                  f"add --overwrite to replace it, or choose another -o folder")
            if old is not None and done and old.get("settings") != settings:
                changed = sorted(k for k in set(old.get("settings", {})) | set(settings)
                                 if old.get("settings", {}).get(k) != settings.get(k))
                raise OutputError(f"{self.path}: an earlier run wrote it with other settings "
                                  f"({', '.join(changed)}); add --overwrite to "
                                  f"read it again, or choose another -o folder")
            if old is not None:
                self.pages = done
                self._rewrite_journal(header)   # drops a cut-off last line
                return
        self._rewrite_journal(header)
        if overwrite and self.path.exists():
            self.path.unlink()

    def _read_journal(self):
        """(header, whole page records); a last line cut by a crash is dropped."""
        lines = self.journal.read_text(encoding="utf-8").splitlines()
        if not lines:
            return None, []
        try:
            old = json.loads(lines[0])
            if not isinstance(old, dict):
                raise ValueError("no header")
        except ValueError:
            raise OutputError(f"{self.journal} is not a foveate journal (its first line is not "
                              f"a header); add --overwrite to start the document afresh") from None
        done = []
        for i, ln in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(ln)
            except json.JSONDecodeError:
                if i == len(lines):
                    break   # the page in progress when the run was stopped
                raise OutputError(f"{self.journal}: line {i} is damaged; add --overwrite to "
                                  f"start the document afresh") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("page"), int):
                raise OutputError(f"{self.journal}: line {i} is not a page record; add "
                                  f"--overwrite to start the document afresh")
            done.append(rec)
        return old, done

    @property
    def done(self) -> set[int]:
        return {r["page"] for r in self.pages}

    def _rewrite_journal(self, header: dict) -> None:
        tmp = self.journal.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(header, ensure_ascii=False) + "\n")
            for r in self.pages:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.journal)

    def add(self, rec: dict) -> None:
        """Record one page (journal first, synced), then rewrite the output file."""
        with open(self.journal, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.pages.append(rec)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(render(self.fmt, self.source, self.n_pages, self.settings, self.pages),
                       encoding="utf-8")
        os.replace(tmp, self.path)


def output_stems(sources: list[str]) -> dict[str, str]:
    """The output name of each input: its file name without suffix; where two inputs of the
    run share it, the suffix stays ("a.pdf", "a.png" -> "a.pdf", "a.png"), then the folders
    above it join in ("x/p.png", "y/p.png" -> "x_p", "y_p") until every name is different."""
    def candidates(s: str) -> list[str]:
        if s == "-":
            return ["stdin"]
        ps = list(Path(s).parts)
        out = [Path(s).stem, Path(s).name]
        for k in range(1, len(ps)):
            out += ["_".join(ps[-k - 1:-1] + [Path(s).stem]), "_".join(ps[-k - 1:])]
        return out

    uniq = list(dict.fromkeys(sources))
    cands = {s: candidates(s) for s in uniq}
    level = {s: 0 for s in uniq}
    while True:
        names = {s: cands[s][min(level[s], len(cands[s]) - 1)] for s in uniq}
        groups: dict[str, list[str]] = {}
        for s in uniq:
            groups.setdefault(names[s], []).append(s)
        clash = [g for g in groups.values() if len(g) > 1
                 and any(level[s] < len(cands[s]) - 1 for s in g)]
        if not clash:
            break
        for g in clash:
            for s in g:
                level[s] += 1
    return {s: names[s].lstrip(".") or "input" for s in sources}
