"""Benchmark (not a test) of `foveate serve`: requests/s and p50/p95 latency for R requests
at several concurrencies, against a server started here on a free localhost port (-np 1 and
-np N), beside Reader.read_many in-process on the same pages. Needs the server extra and
matplotlib (the pages). Run: python -m foveate.instruments.bench_server -m MODEL --mmproj MMPROJ"""
from __future__ import annotations

import argparse
import base64
import io
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def _serve(model, mmproj, parallel, threads):
    import uvicorn

    from ..surface.api import Reader
    from ..surface.server import create_app

    reader = Reader(model, mmproj, threads=threads, parallel=parallel, n_ctx=4096 * parallel)
    app = create_app(reader, "m", queue=256, parallel=parallel)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    return server, th, reader, f"http://127.0.0.1:{port}/v1"


def main(argv=None) -> int:
    import openai

    from .bench_pages import held_out_pages

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--mmproj", required=True)
    ap.add_argument("-r", "--requests", type=int, default=64)
    ap.add_argument("-np", "--parallel", type=int, default=8)
    ap.add_argument("-n", "--max-tokens", type=int, default=300)
    ap.add_argument("-t", "--threads", type=int, default=None)
    a = ap.parse_args(argv)
    pages = held_out_pages(8)
    uris = []
    for p in pages:
        b = io.BytesIO()
        p.save(b, format="PNG")
        uris.append("data:image/png;base64," + base64.b64encode(b.getvalue()).decode())
    print(f"| server | concurrency | requests | requests/s | p50 s | p95 s |\n|---|---|---|---|---|---|")
    for np_ in (1, a.parallel):
        server, th, reader, url = _serve(a.model, a.mmproj, np_, a.threads)
        cl = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)

        def one(i):
            t0 = time.perf_counter()
            cl.chat.completions.create(model="m", max_tokens=a.max_tokens, messages=[
                {"role": "user", "content": [{"type": "image_url",
                                              "image_url": {"url": uris[i % len(uris)]}}]}])
            return time.perf_counter() - t0
        one(0)   # warm-up
        for conc in (1, 4, 8):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(conc) as ex:
                lat = sorted(ex.map(one, range(a.requests)))
            dt = time.perf_counter() - t0
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            print(f"| serve -np {np_} | {conc} | {a.requests} | {a.requests / dt:.2f} | "
                  f"{statistics.median(lat):.3f} | {p95:.3f} |", flush=True)
        server.should_exit = True
        th.join(10)
        if np_ > 1:   # in-process, same pages, no HTTP
            t0 = time.perf_counter()
            res = list(reader.read_many([pages[i % len(pages)] for i in range(a.requests)],
                                        max_tokens=a.max_tokens))
            dt = time.perf_counter() - t0
            print(f"| Reader.read_many, parallel {np_} (in-process) | - | {len(res)} | "
                  f"{len(res) / dt:.2f} | - | - |")
        reader.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
