"""Benchmark (not a test) of `foveate read --ray`: pages/min of a local run and of Ray runs
with 1 and 2 actors on this machine, side by side, and the driver's ceiling (how many pages
a second one driver can write into -o), for the on-paper cluster table in
docs/benchmarks.md. Needs the ray and pages extras.

Each configuration reads K1 and then K2 held-out generated pages (a fresh -o each time) as
the CLI does, in a subprocess; the rate is (K2 - K1) / (t2 - t1), which leaves out what every
run pays once (Python start, model load, Ray actors starting), and that fixed cost is shown
beside it. The Ray runs join one local cluster started here (its start is not timed).
Run: python -m foveate.instruments.bench_ray -m MODEL --mmproj MMPROJ
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"bench_ray: {' '.join(cmd)} failed:\n{r.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def driver_ceiling(records_per_doc: int, n_pages: int, tmp: Path) -> float:
    """Pages per second one driver writes into -o (journal line synced, file rewritten),
    for documents of `records_per_doc` pages: the bound on any cluster's rate."""
    from ..surface.pipeline.output import DocumentOutput

    rec = {"page": 1, "text": "word " * 400, "image": {"width": 1000, "height": 1400},
           "wall_s": 1.0, "stop_reason": "eos", "warnings": [], "stats": {}}
    out_dir = Path(tempfile.mkdtemp(dir=tmp))
    t0 = time.perf_counter()
    done = 0
    for d in range(-(-n_pages // records_per_doc)):
        out = DocumentOutput(out_dir, f"doc{d}", f"doc{d}.pdf", records_per_doc, "markdown", {})
        for p in range(1, records_per_doc + 1):
            out.add({**rec, "page": p})
            done += 1
    return done / (time.perf_counter() - t0)


def main(argv=None) -> int:
    import ray

    from .bench_pages import held_out_pages

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--mmproj", required=True)
    ap.add_argument("--pages", default="16,64", help="K1,K2: pages of the short and long run")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                    help="CPUs of the local Ray cluster (and threads of the local run)")
    a = ap.parse_args(argv)
    k1, k2 = (int(x) for x in a.pages.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="foveate-bench-ray-"))
    folders = {}
    pages = held_out_pages(k2)
    for k in (k1, k2):
        folders[k] = tmp / f"pages-{k}"
        folders[k].mkdir()
        for i, im in enumerate(pages[:k]):
            im.save(folders[k] / f"p{i:05d}.png")
    ray.init(num_cpus=a.cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    base = [sys.executable, "-m", "foveate", "read", "-m", a.model, "--mmproj", a.mmproj, "-q"]
    c = a.cpus
    configs = [
        ("local, -t %d" % c, ["-t", str(c)]),
        ("local, -np 2, -t %d" % c, ["-t", str(c), "-np", "2"]),
        ("Ray, 1 actor x %d CPUs" % c, ["--ray", address, "--ray-actors", "1",
                                        "--ray-cpus", str(c)]),
        ("Ray, %d actors x 1 CPU" % c, ["--ray", address, "--ray-actors", str(c),
                                       "--ray-cpus", "1"]),
    ]
    print(f"| run | pages/min (marginal) | fixed cost s | wall s, {k1} pages | "
          f"wall s, {k2} pages |\n|---|---|---|---|---|", flush=True)
    results = {}
    for name, flags in configs:
        t = {k: _timed(base + [str(folders[k]), "-o", str(tmp / f"out-{name}-{k}".replace(" ", "_")
                                                        .replace(",", ""))] + flags)
             for k in (k1, k2)}
        rate = (k2 - k1) / (t[k2] - t[k1])
        fixed = t[k1] - k1 / rate
        results[name] = dict(pages_per_min=rate * 60, fixed_s=fixed, wall=t)
        print(f"| {name} | {rate * 60:.1f} | {fixed:.1f} | {t[k1]:.1f} | {t[k2]:.1f} |",
              flush=True)
    ray.shutdown()
    print("\n| driver writing -o | pages/s |\n|---|---|")
    for per_doc, n in ((1, 400), (100, 400), (1000, 1000)):
        print(f"| {per_doc}-page documents | {driver_ceiling(per_doc, n, tmp):.0f} |", flush=True)
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
