"""Soak (a benchmark, not a test; tests/test_soak.py runs a reduced one): many pages read in one
process by the bundled readers, fixation and merging switched on and off along the way, bad
inputs mixed in; does memory, the open file descriptors or the speed drift?

Pages: generated held-out pages (instruments/pages.py), the grid reader on grid pages and the
layout reader on document pages, taking turns. Settings: fixation off / 0.05 x merge off / 0.84 /
auto, switched every `switch` pages on both readers (Reader has no per-read settings: the
engine's set_fixation / set_merge, run on the Reader's engine thread). Pages arrive as a path,
PNG bytes or a PIL image in turn. Every `bad_every` pages a bad input goes in first (a corrupt
PNG, an empty file, a missing path, a 4x4 image, in turn): each must raise ImageError with its
message, and the run goes on. Every page is sampled: RSS (VmRSS), open fds, OS threads, read()
seconds.

Warm-up: the first 10% of the pages, and at least one turn of every (reader, setting), so each
has allocated its buffers once. Growth: the median of the last window (10% of the pages)
against the median of the first window after warm-up; speed drift: the median page seconds of
the last window against the first, per (reader, setting), so the mix does not confuse it.

Cycles: Reader created, one small page read (so the context's compute buffers and the engine
thread's OpenMP team exist), closed, `cycles` times; RSS / fds / threads after the last cycle
against after the first few (the allocator and the libraries' one-time state settle there).

Run: python -m foveate.instruments.soak --pages 1000 --cycles 100 [--json out.json]
(here in surface/, beside bench_server, because it drives a Reader: instruments/ may not import
surface/, tests/test_layers.py)."""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# the bundled readers live in the repository, not the wheel: a source checkout's models/reader,
# else ./models/reader (run from the checkout); --models / models= say where otherwise
_CHECKOUT = Path(__file__).resolve().parents[3] / "models" / "reader"
BUNDLED = _CHECKOUT if _CHECKOUT.is_dir() else Path("models") / "reader"
MMPROJ = BUNDLED / "foveate-reader-mmproj-f16.gguf"
# reader name -> (model file, page layout it reads)
READERS = {"grid": ("foveate-reader-q8_0.gguf", "grid"),
           "layout": ("foveate-reader-layout-q8_0.gguf", "document")}
# (name, fixation ratio, merge)
SETTINGS = [("off", 0.0, None), ("fix 0.05", 0.05, None), ("merge 0.84", 0.0, 0.84),
            ("merge auto", 0.0, "auto"), ("fix+merge 0.84", 0.05, 0.84),
            ("fix+merge auto", 0.05, "auto")]
BAD = ["corrupt", "empty", "missing", "too small"]
# what each bad input's ImageError says (inputs/images.py)
BAD_MESSAGE = {"corrupt": "corrupt", "empty": "empty", "missing": "not found",
               "too small": "too small"}
FORMS = ["path", "bytes", "pil"]


# --- what the process holds --------------------------------------------------------------------
def rss_kib() -> int:
    """Resident set size now (VmRSS, KiB); where /proc is missing, the peak (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    """Threads of this process as the OS sees them (Python's, the engine's, OpenMP's)."""
    return len(os.listdir("/proc/self/task"))


@dataclass
class Sample:
    index: int          # page (or cycle) number, from 0
    rss_kib: int
    fds: int
    threads: int
    reader: str = ""
    setting: str = ""
    seconds: float = 0.0
    cer: float = 0.0


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def growth(before: float, after: float) -> float:
    return (after - before) / before if before else 0.0


# --- the page soak ----------------------------------------------------------------------------
@dataclass
class SoakReport:
    pages: int
    readers: list
    switch: int
    warmup: int
    window: int
    samples: list = field(default_factory=list)        # one Sample per good page
    bad: list = field(default_factory=list)            # (kind, raised type, message, ok)
    empty_outputs: int = 0
    start: dict = field(default_factory=dict)          # rss_kib / fds / threads before page 0
    seconds: float = 0.0

    def _window(self, first: bool):
        lo = self.warmup if first else self.pages - self.window
        return [s for s in self.samples if lo <= s.index < lo + self.window]

    def memory(self) -> dict:
        """Per measure: start, end of warm-up, first / last window medians, end, max, growth."""
        first, last = self._window(True), self._window(False)
        warm = [s for s in self.samples if s.index < self.warmup]
        after = [s for s in self.samples if s.index >= self.warmup]
        out = {}
        for m in ("rss_kib", "fds", "threads"):
            f, l = _median([getattr(s, m) for s in first]), _median([getattr(s, m) for s in last])
            out[m] = {"start": self.start[m], "warmed": getattr(warm[-1], m) if warm else None,
                      "first": f, "last": l, "end": getattr(self.samples[-1], m),
                      "max_after_warmup": max(getattr(s, m) for s in after),
                      "growth": growth(f, l),
                      "per_page": slope([s.index for s in after], [getattr(s, m) for s in after])}
        return out

    def speed(self) -> list[dict]:
        """Median page seconds, first vs last window, per (reader, setting); mean CER."""
        first, last = self._window(True), self._window(False)
        rows = []
        for r in self.readers:
            for name, _, _ in SETTINGS:
                pick = lambda ss: [s.seconds for s in ss if s.reader == r and s.setting == name]
                f, l = _median(pick(first)), _median(pick(last))
                all_ = [s for s in self.samples if s.reader == r and s.setting == name]
                rows.append({"reader": r, "setting": name, "pages": len(all_),
                             "first": f, "last": l, "n_first": len(pick(first)),
                             "n_last": len(pick(last)), "drift": growth(f, l),
                             "cer": statistics.fmean(s.cer for s in all_) if all_ else None})
        return rows

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "samples"}
        d["memory"], d["speed"] = self.memory(), self.speed()
        d["samples"] = [asdict(s) for s in self.samples]
        return d


def _bad_input(kind: str, tmp: Path, good_png: bytes):
    if kind == "corrupt":   # a real PNG cut in half: Pillow opens the header, decoding fails
        p = tmp / "corrupt.png"
        p.write_bytes(good_png[:len(good_png) // 2])
        return p
    if kind == "empty":
        p = tmp / "empty.png"
        p.write_bytes(b"")
        return p
    if kind == "missing":
        return tmp / "no-such-page.png"
    from PIL import Image
    return Image.new("RGB", (4, 4), "white")


def _as_form(image, form: str, tmp: Path, i: int):
    if form == "pil":
        return image
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    if form == "bytes":
        return buf.getvalue()
    p = tmp / f"page-{i % 8}.png"
    p.write_bytes(buf.getvalue())
    return p


def open_reader(name: str, threads: int | None = 2, n_ctx: int = 2048, models: Path = BUNDLED):
    """A bundled reader (READERS) from `models` (the repository's models/reader)."""
    from ..surface.api import Reader

    model, _ = READERS[name]
    models = Path(models)
    # flash attention on from the start: fixation's kernel needs its cache layout, and the
    # settings switch fixation on and off on the same context
    return Reader(models / model, models / MMPROJ.name, n_ctx=n_ctx, threads=threads,
                  flash_attn=True)


def _apply(reader, fixation: float, merge) -> None:
    eng = reader.engine
    reader._on_engine(eng.set_fixation, fixation)
    reader._on_engine(eng.set_merge, merge)


def soak(pages: int, readers=("grid", "layout"), switch: int = 2, bad_every: int = 25,
         threads: int | None = 2, progress=None, models: Path = BUNDLED) -> SoakReport:
    """Read `pages` good pages (plus a bad input every `bad_every`) and sample each one."""
    from ..errors import ImageError
    from .evaluate import cer
    from .pages import LAYOUTS, make_page

    readers = list(readers)
    cycle = switch * len(SETTINGS) * len(readers)   # pages until every (reader, setting) ran
    warmup = max(pages // 10, min(cycle, pages // 2))
    window = max(1, min(pages // 10, (pages - warmup) // 2))
    rep = SoakReport(pages, readers, switch, warmup, window)
    rep.start = {"rss_kib": rss_kib(), "fds": open_fds(), "threads": os_threads()}
    open_ = {r: open_reader(r, threads, models=models) for r in readers}
    t_run = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="foveate-soak-") as d:
            tmp = Path(d)
            n_bad, setting = 0, None
            for i in range(pages):
                name, fix, merge = SETTINGS[(i // switch) % len(SETTINGS)]
                if name != setting:
                    for r in open_.values():
                        _apply(r, fix, merge)
                    setting = name
                rname = readers[i % len(readers)]
                reader = open_[rname]
                page = make_page("heldout", 10_000 + i, LAYOUTS[READERS[rname][1]])
                if bad_every and i % bad_every == bad_every - 1:
                    kind = BAD[n_bad % len(BAD)]
                    n_bad += 1
                    buf = io.BytesIO()
                    page.image.save(buf, format="PNG")
                    try:
                        reader.read(_bad_input(kind, tmp, buf.getvalue()), max_tokens=64)
                        rep.bad.append((kind, None, "no exception", False))
                    except ImageError as e:
                        rep.bad.append((kind, type(e).__name__, str(e),
                                        BAD_MESSAGE[kind] in str(e)))
                    except Exception as e:   # noqa: BLE001 - recorded as the wrong exception
                        rep.bad.append((kind, type(e).__name__, str(e), False))
                inp = _as_form(page.image, FORMS[i % len(FORMS)], tmp, i)
                t0 = time.perf_counter()
                res = reader.read(inp)
                dt = time.perf_counter() - t0
                if not res.text.strip():
                    rep.empty_outputs += 1
                rep.samples.append(Sample(i, rss_kib(), open_fds(), os_threads(), rname, name,
                                          dt, cer(res.text, page.text)))
                if progress:
                    progress(i, rep.samples[-1])
    finally:
        for r in open_.values():
            r.close()
    rep.seconds = time.perf_counter() - t_run
    return rep


# --- create / close cycles --------------------------------------------------------------------
@dataclass
class CyclesReport:
    cycles: int
    baseline: int                # cycles after which the baseline sample is taken
    read: bool
    start: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)       # one Sample per cycle, after close
    seconds: float = 0.0

    def summary(self) -> dict:
        base, end = self.samples[self.baseline - 1], self.samples[-1]
        after = self.samples[self.baseline - 1:]
        out = {}
        for m in ("rss_kib", "fds", "threads"):
            b, e = getattr(base, m), getattr(end, m)
            out[m] = {"start": self.start[m], "baseline": b, "end": e,
                      "max": max(getattr(s, m) for s in after), "growth": growth(b, e),
                      "per_cycle": slope([s.index for s in after], [getattr(s, m) for s in after])}
        return out

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "samples"}
        d["summary"] = self.summary()
        d["samples"] = [asdict(s) for s in self.samples]
        return d


def slope(xs, ys) -> float:
    """Least-squares slope of ys over xs (growth per cycle)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def release_freed_memory() -> None:
    """gc, then glibc's malloc_trim(0) where there is one: what RSS shows afterwards is what
    is still allocated, not the freed heap glibc keeps for reuse (which grows and shrinks with
    fragmentation: 400 cycles measured +9.0% untrimmed, +0.3% trimmed; docs/benchmarks.md)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: untrimmed RSS


def cycles(n: int, reader: str = "grid", read: bool = True, baseline: int | None = None,
           threads: int | None = 2, models: Path = BUNDLED) -> CyclesReport:
    """Create a Reader, read one small page (read=True), close it; n times."""
    from .pages import PageSpec, make_page

    small = make_page("heldout", 7, PageSpec(cols=8, rows=3)).image
    baseline = baseline or max(3, n // 20)
    rep = CyclesReport(n, min(baseline, n), read)
    rep.start = {"rss_kib": rss_kib(), "fds": open_fds(), "threads": os_threads()}
    t0 = time.perf_counter()
    for c in range(n):
        r = open_reader(reader, threads, models=models)
        if read:
            r.read(small, max_tokens=32)
        r.close()
        del r
        release_freed_memory()
        rep.samples.append(Sample(c, rss_kib(), open_fds(), os_threads()))
    rep.seconds = time.perf_counter() - t0
    return rep


# --- tables ---------------------------------------------------------------------------------
def _mib(k):
    return f"{k / 1024:.1f}"


def format_soak(rep: SoakReport) -> str:
    mem = rep.memory()
    ok = sum(1 for b in rep.bad if b[3])
    out = [f"soak: {rep.pages} pages on {', '.join(rep.readers)} in {rep.seconds:.0f} s, "
           f"settings switched every {rep.switch} pages, warm-up {rep.warmup} pages, "
           f"windows of {rep.window} pages",
           f"bad inputs: {ok}/{len(rep.bad)} raised ImageError with their message; "
           f"empty outputs: {rep.empty_outputs}", "",
           "| measure | start | end of warm-up | first window (median) | last window (median) "
           "| end | max after warm-up | growth | per page after warm-up (fit) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for m, label, fmt, unit in (("rss_kib", "RSS MiB", _mib, "KiB"), ("fds", "open fds", str, ""),
                                ("threads", "OS threads", str, "")):
        v = mem[m]
        out.append(f"| {label} | {fmt(v['start'])} | {fmt(v['warmed'])} | {fmt(v['first'])} | "
                   f"{fmt(v['last'])} | {fmt(v['end'])} | {fmt(v['max_after_warmup'])} | "
                   f"{v['growth']:+.1%} | {v['per_page']:+.2f} {unit} |")
    out += ["", "| reader | setting | pages | first window s (n) | last window s (n) | drift "
            "| mean CER |", "|---|---|---|---|---|---|---|"]
    for r in rep.speed():
        out.append(f"| {r['reader']} | {r['setting']} | {r['pages']} | {r['first']:.3f} "
                   f"({r['n_first']}) | {r['last']:.3f} ({r['n_last']}) | {r['drift']:+.1%} | "
                   f"{r['cer']:.3f} |")
    bad = [b for b in rep.bad if not b[3]]
    for kind, typ, msg, _ in bad:
        out.append(f"bad input {kind!r}: {typ}: {msg}")
    return "\n".join(out)


def format_cycles(rep: CyclesReport) -> str:
    s = rep.summary()
    out = [f"cycles: {rep.cycles} x (Reader created, {'one small page read, ' if rep.read else ''}"
           f"closed) in {rep.seconds:.0f} s; baseline after cycle {rep.baseline}; RSS after gc + "
           f"malloc_trim(0) each cycle", "",
           f"| measure | before | after cycle {rep.baseline} | after cycle {rep.cycles} | max "
           "| growth | per cycle (fit) |", "|---|---|---|---|---|---|---|"]
    for m, label, fmt, unit in (("rss_kib", "RSS MiB", _mib, "KiB"), ("fds", "open fds", str, ""),
                                ("threads", "OS threads", str, "")):
        v = s[m]
        out.append(f"| {label} | {fmt(v['start'])} | {fmt(v['baseline'])} | {fmt(v['end'])} | "
                   f"{fmt(v['max'])} | {v['growth']:+.1%} | {v['per_cycle']:+.2f} {unit} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m foveate.instruments.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=1000, help="good pages to read (0: none)")
    ap.add_argument("--cycles", type=int, default=0, help="Reader create/read/close cycles")
    ap.add_argument("--readers", default="grid,layout", help="bundled readers, taking turns")
    ap.add_argument("--switch", type=int, default=2, help="pages between setting switches")
    ap.add_argument("--bad-every", type=int, default=25, help="a bad input every N pages (0: none)")
    ap.add_argument("--no-read", action="store_true", help="cycles: do not read a page")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--models", type=Path, default=BUNDLED, help="folder of the bundled readers")
    ap.add_argument("--json", type=Path, help="write the reports (and every sample) here")
    ap.add_argument("--progress", type=int, default=100, help="a line every N pages (0: none)")
    a = ap.parse_args(argv)
    out = {}

    def progress(i, s):
        if a.progress and (i + 1) % a.progress == 0:
            print(f"  page {i + 1}: RSS {_mib(s.rss_kib)} MiB, {s.fds} fds, {s.threads} threads, "
                  f"{s.seconds:.3f} s", flush=True)

    if a.pages:
        rep = soak(a.pages, a.readers.split(","), a.switch, a.bad_every, a.threads, progress,
                   a.models)
        print(format_soak(rep), flush=True)
        out["soak"] = rep.as_dict()
    if a.cycles:
        crep = cycles(a.cycles, a.readers.split(",")[0], not a.no_read, threads=a.threads,
                      models=a.models)
        print(("\n" if a.pages else "") + format_cycles(crep))
        out["cycles"] = crep.as_dict()
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
