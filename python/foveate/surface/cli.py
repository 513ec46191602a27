"""foveate command line: `foveate read`, `eval`, `bench`, `pages`, `make-model`, `models`, `info`.

Flags mean what llama.cpp's mean where they share a name (-m, --mmproj, -ngl, -c, -t, -n, -b).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path



class HELP(argparse.HelpFormatter):
    """Every flag's help shows its default, unless the help already says it (or there is
    none to show: a switch, or an optional value with no default)."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if ("default" in h or d is None or d is False or d is argparse.SUPPRESS
                or action.nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE)
                or not action.option_strings):
            return h
        return f"{h} (default: {d})"

from ..engine.kv_cache import KV_CACHE_TYPES
from ..errors import FoveateError


def _model_args(p: argparse.ArgumentParser, need_mmproj: bool = True,
                ctx_default: int | None = 4096) -> None:
    p.add_argument("-m", "--model", required=True, help="language model GGUF")
    p.add_argument("--mmproj", required=need_mmproj, help="image projector GGUF")
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, help="layers to offload (GPU builds)")
    p.add_argument("-c", "--ctx-size", type=int, default=ctx_default,
                   help="context size (n_ctx)" + ("" if ctx_default else
                                                  " (default: sized for the run)"))
    p.add_argument("-b", "--batch-size", type=int, default=2048,
                   help="logical batch size: prompt tokens decoded per llama_decode call")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("-fa", "--flash-attn", choices=["on", "off", "auto"], default="auto",
                   help="flash attention (auto: llama.cpp decides; on when fixation is on)")
    p.add_argument("-ctk", "--cache-type-k", choices=KV_CACHE_TYPES, default="f16",
                   help="KV cache type of K (a quantized cache on a GPU turns fixation off)")
    p.add_argument("-ctv", "--cache-type-v", choices=KV_CACHE_TYPES, default="f16",
                   help="KV cache type of V (quantized: needs flash attention)")


def _fixation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixation", type=float, default=0.0, metavar="RATIO",
                   help="attend to this share of the image tokens per decode step (0 = off)")
    p.add_argument("--fixation-k-min", type=int, default=16, help="at least this many image tokens")
    p.add_argument("--focal-layers", default="auto",
                   help="auto (calibrated, else a third of the depth) or layer indices: 7,12")
    p.add_argument("--fixation-dilation", type=int, default=0,
                   help="warm start also attends the N image tokens after each selected one")
    p.add_argument("--fixation-refresh", type=int, default=1, metavar="R",
                   help="focal layers re-select every R-th step (1 = every step)")
    p.add_argument("--fixation-sample", type=int, default=64, metavar="N",
                   help="N fixed image tokens spread over the page also attend, each for its "
                        "share of the unselected ones (compensation; 0 = off)")


def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge", default="off", metavar="auto|RATIO|off",
                   help="prefill token merging (RTPrune): keep this share of the image tokens, "
                        "'auto' = a ratio per page from token redundancy and text density")
    p.add_argument("--merge-positions", default="original", choices=("original", "consecutive"),
                   help="1-D RoPE models: decode kept image tokens at their original positions "
                        "(gaps, as the RTPrune reference) or renumbered consecutively")
    _merge_score_arg(p)


def _preset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="auto", metavar="auto|NAME|none",
                   help="the prompt pages are read with unless -p gives one: the model "
                        "family's published OCR prompt (auto), a named preset (`foveate models` "
                        "lists them), or none (foveate's own)")


def _merge_score_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge-score", default="auto", choices=("auto", "norm", "duplicates"),
                   help="which image tokens a keep ratio keeps: largest L2 norm (RTPrune), "
                        "fewest near-duplicates on the page (blank paper goes first), or auto "
                        "(default: norm on DeepSeek-OCR's projector, duplicates on others)")


def _focal(text: str) -> list[int] | None:
    if text in ("", "auto"):
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--focal-layers takes 'auto' or layer indices like 7,12, "
                         f"not {text!r}") from None


def _engine_kwargs(a) -> dict:
    fa = {"on": True, "off": False, "auto": None}[a.flash_attn]
    kw = dict(n_gpu_layers=a.n_gpu_layers, n_ctx=a.ctx_size, n_batch=a.batch_size,
              threads=a.threads, flash_attn=fa, cache_type_k=a.cache_type_k,
              cache_type_v=a.cache_type_v)
    if hasattr(a, "fixation_k_min"):
        # every fixation flag is checked, fixation on or off (engine/controls.py)
        # (bench has no --fixation-dilation: its rows decode without it)
        kw.update(fixation_k_min=a.fixation_k_min, focal_layers=_focal(a.focal_layers),
                  fixation_dilation=getattr(a, "fixation_dilation", 0),
                  fixation_refresh=a.fixation_refresh, fixation_sample=a.fixation_sample)
    if isinstance(getattr(a, "fixation", None), float) and a.fixation:
        kw.update(fixation=a.fixation)
    if getattr(a, "merge", "off") not in ("off", None):
        kw.update(merge=a.merge, merge_positions=getattr(a, "merge_positions", "original"),
                  merge_score=getattr(a, "merge_score", "auto"))
    return kw


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
    from . import read_cmd

    _ray_address(a)

    if a.parallel < 1:
        raise ValueError(f"-np must be at least 1, got {a.parallel}")
    if a.ctx_size is None:   # 4096 cells per page in flight
        a.ctx_size = 4096 * a.parallel
    if a.trace and a.parallel > 1:
        raise ValueError("--trace reads one page: leave -np at 1")
    kw = _engine_kwargs(a)
    kw.update(image_min_tokens=a.image_min_tokens, image_max_tokens=a.image_max_tokens,
              parallel=a.parallel, preset=a.preset)
    return read_cmd.run(a, kw)


# A bench page's text around its image (chat template, markers), with room to spare.
BENCH_PROMPT_TOKENS = 128


def bench_ctx_size(image_tokens: int | None, n_decode: int, parallel: int) -> int:
    """n_ctx for a bench run when -c is not given: the synthetic image, the prompt and every
    sequence's decoded tokens, rounded up to 256; a real page (--image) gets 4096, as read."""
    if image_tokens is None:
        return 4096
    need = image_tokens + BENCH_PROMPT_TOKENS + max(1, parallel) * max(n_decode, 4)
    return max(4096, -(-need // 256) * 256)


# what building or running stock llama-bench can raise (no source, no cmake, a failed build, a
# crash of stock + 0001 too): one line, as for any bad setting
STOCK_ERRORS = (OSError, RuntimeError, subprocess.CalledProcessError)


def cmd_bench(a) -> int:
    from ..instruments.bench import format_table, median_row, run_configs, run_once
    from ..engine.core import Engine

    if a.pages is not None:
        return _bench_pages(a)
    if a.page_time:
        return _bench_page_time(a)
    if (a.image is None) == (a.image_tokens is None):
        raise SystemExit("foveate bench: give exactly one of --image or --image-tokens")
    if a.image is not None and not a.mmproj:
        raise SystemExit("foveate bench: --image needs --mmproj")
    fix = [float(x) for x in a.fixation.split(",")] if a.fixation else []
    merges = ["off"] + [m.strip() for m in a.merge.split(",")] if a.merge else []
    if fix and merges:
        raise SystemExit("foveate bench: give --fixation or --merge, not both")
    if a.fill == "state" and (a.image is not None or merges or not a.image_tokens):
        raise SystemExit("foveate bench: --fill state works with --image-tokens, not with "
                         "--image or --merge (it skips the prefill)")
    if a.ctx_size is None:
        a.ctx_size = bench_ctx_size(a.image_tokens, a.n_decode, a.parallel)
    kw = _engine_kwargs(a)
    kw.pop("merge", None)
    if fix and kw.get("flash_attn") is None:
        kw["flash_attn"] = True  # the same FA setting for every row
    if a.parallel > 1:
        if a.image is not None or merges or a.stock:
            raise SystemExit("foveate bench: --parallel works with --image-tokens and --fixation "
                             "(not --image, --merge or --stock)")
        kw.update(n_seq=a.parallel, kv_unified=True)
    eng = Engine(a.model, a.mmproj, **kw)  # mmproj None: synthetic tokens
    if a.parallel > 1:
        from ..instruments.bench import run_parallel_configs
        rows = run_parallel_configs(eng, a.image_tokens, a.n_decode, a.parallel, (0.0, *fix),
                                    a.repetitions, a.fixation_k_min, _focal(a.focal_layers),
                                    a.fixation_refresh, a.fill, a.fixation_sample)
    elif merges:
        from ..instruments.bench import run_merge_configs
        from ..engine.merging import parse_merge
        for m in merges:
            parse_merge(m)
        rows = run_merge_configs(eng, a.image, a.image_tokens or 0, a.n_decode, merges,
                                 a.repetitions)
    elif fix:  # one prefill, then dense and each ratio decode from the same cache
        rows = run_configs(eng, a.image, a.image_tokens or 0, a.n_decode, (0.0, *fix),
                           a.repetitions, a.fixation_k_min, _focal(a.focal_layers),
                           a.fixation_refresh, a.fill, a.fixation_sample)
    else:
        run_once(eng, a.image, a.image_tokens or 0, min(4, a.n_decode), a.fill)  # warm-up
        rows = [median_row([run_once(eng, a.image, a.image_tokens or 0, a.n_decode, a.fill)
                            for _ in range(a.repetitions)])]
    if a.stock:
        from ..instruments.bench import stock_rows
        n_prompt = rows[0].image_tokens if a.image is None else rows[0].prompt_tokens
        try:
            rows[:0] = stock_rows(a.model, n_prompt, a.n_decode, eng.threads, a.repetitions,
                                  kw.get("flash_attn"))
        except STOCK_ERRORS as e:
            raise ValueError(f"--stock: {e}") from None
    print(f"model: {a.model}\nthreads: {eng.threads}  n_ctx: {eng.n_ctx}  "
          f"flash attn: {kw.get('flash_attn')}  decode tokens: {a.n_decode}  "
          f"repetitions: {a.repetitions} (median)\n")
    print(format_table(rows))
    return 0


def _bench_page_time(a) -> int:
    from ..engine.core import Engine
    from ..instruments.page_time import format_page_table, run_page_time, stock_row

    if a.image is None or not a.mmproj:
        raise SystemExit("foveate bench: --page-time reads one real page: give --image and --mmproj")
    fix = [float(x) for x in a.fixation.split(",")] if a.fixation else [0.05]
    merges = [m.strip() for m in a.merge.split(",")] if a.merge else ["auto"]
    if len(fix) != 1 or len(merges) != 1 or not 0 < fix[0] <= 1 or merges[0] == "off":
        raise SystemExit("foveate bench: --page-time takes one --fixation ratio in (0, 1] and one "
                         "--merge setting (a keep ratio or auto)")
    if a.ctx_size is None:
        a.ctx_size = 8192
    kw = _engine_kwargs(a)
    kw.pop("merge", None)
    if kw.get("flash_attn") is None:
        kw["flash_attn"] = True  # the same FA setting for every row
    eng = Engine(a.model, a.mmproj, **kw)
    rows, n_prompt = run_page_time(eng, a.image, a.n_decode, fix[0], merges[0],
                                   (a.fixation_k_min, _focal(a.focal_layers), a.fixation_refresh,
                                    a.fixation_sample))
    if a.stock:
        try:
            rows.insert(0, stock_row(a.model, rows[0], n_prompt, a.n_decode, eng.threads,
                                     kw.get("flash_attn")))
        except STOCK_ERRORS as e:
            raise ValueError(f"--stock: {e}") from None
    print(f"model: {a.model}\nmmproj: {a.mmproj}\npage: {a.image}  threads: {eng.threads}  "
          f"decode tokens: {a.n_decode} (EOS ignored)  flash attn: {kw.get('flash_attn')}\n")
    print(format_page_table(rows))
    return 0


def _bench_pages(a) -> int:
    from ..instruments.bench_pages import format_pages_table, run_pages

    if not a.mmproj:
        raise SystemExit("foveate bench: --pages reads whole pages: it needs --mmproj")
    if a.pages < 1 or a.parallel < 1:
        raise SystemExit("foveate bench: --pages and -np must be at least 1")
    ns = sorted({1, a.parallel} | {n for n in (2, 4, 8, 16, 32) if n < a.parallel})
    kw = {"n_ctx": a.ctx_size} if a.ctx_size else {}
    rows = run_pages(a.model, a.mmproj, a.pages, ns, a.threads, a.n_decode, kw)
    print(f"model: {a.model}\n{a.pages} held-out generated pages, up to {a.n_decode} tokens each, "
          f"threads: {a.threads or 'all'}\n")
    print(format_pages_table(rows))
    return 0


def cmd_make_model(a) -> int:
    from ..instruments.shapes import shape_names, write_shape_pair
    from ..instruments.tiny_model import SHAPES, make_shape, quantize, write_tiny_pair

    if a.layers is not None and a.layers < 1:
        raise ValueError(f"--layers must be at least 1, got {a.layers}")
    if a.shape == "deepseek-ocr":
        from ..instruments.deepseek_ocr_shape import write_deepseek_ocr_pair
        model, mmproj = write_deepseek_ocr_pair(Path(a.out), layers=a.layers, seed=a.seed)
    elif a.shape in SHAPES:
        model, mmproj = write_tiny_pair(Path(a.out), make_shape(a.shape, a.layers), seed=a.seed,
                                        name=a.shape)
    elif a.shape in shape_names():
        model, mmproj = write_shape_pair(a.shape, Path(a.out), layers=a.layers, seed=a.seed,
                                         vocab=a.vocab)
    else:
        known = [*SHAPES, "deepseek-ocr", *shape_names()]
        raise ValueError(f"unknown shape {a.shape!r}; known: {', '.join(known)}")
    print(model)
    print(mmproj)
    for q in a.quantize:
        print(quantize(model, model.with_name(f"{a.shape}-{q.lower()}.gguf"), q))
    return 0


def cmd_models(a) -> int:
    from .models_cmd import describe_pair, family_table

    if bool(a.model) != bool(a.mmproj):
        raise ValueError("foveate models: give both -m MODEL and --mmproj MMPROJ, or neither")
    print(describe_pair(a.model, a.mmproj) if a.model else family_table())
    return 0


def cmd_pages(a) -> int:
    from dataclasses import replace

    from ..instruments.pages import LAYOUTS, write_pages

    spec = LAYOUTS[a.layout]
    if a.rows is not None:   # a fixed line count
        spec = replace(spec, rows=a.rows, min_rows=0)
    if a.cols is not None:
        spec = replace(spec, cols=a.cols)
    for p in write_pages(Path(a.out), a.split, a.start, a.count, spec):
        print(p)
    return 0


def cmd_eval(a) -> int:
    from .api import Reader
    from ..instruments.evaluate import evaluate, page_pairs

    missing: list = []
    pairs = page_pairs(a.pages, missing)
    for img in missing:
        print(f"foveate eval: {img}: no ground truth {img.with_suffix('.txt').name} beside "
              f"it; page skipped", file=sys.stderr)
    if not pairs:
        raise SystemExit("foveate eval: no pages with ground truth found")
    reader = Reader(a.model, a.mmproj, **_engine_kwargs(a))
    res = evaluate(reader, pairs, max_tokens=a.n_predict)
    for page, c in zip(res.pages, res.cers):
        print(f"{c:8.4f}  {page}")
    print(f"pages: {len(pairs)}  chars: {res.chars}  CER: {res.cer:.4f}  "
          f"accuracy: {res.accuracy:.4f}")
    if res.image_tokens_merged != res.image_tokens:
        ratios = res.merge_ratios
        print(f"merging: image tokens {res.image_tokens} -> {res.image_tokens_merged} "
              f"({res.image_tokens_merged / res.image_tokens:.4f}); keep ratio mean "
              f"{sum(ratios) / len(ratios):.4f}, min {min(ratios):.4f}, max {max(ratios):.4f}; "
              f"row score {reader.engine.merge_score}")
    return 0


def cmd_calibrate(a) -> int:
    from ..instruments.calibrate import calibrate
    from ..instruments.evaluate import page_pairs

    pages = [p for p, _ in page_pairs(a.pages)] if all(Path(p).is_dir() for p in a.pages) \
        else a.pages
    scores, out = calibrate(a.model, a.mmproj, pages, ratio=a.ratio, k_min=a.fixation_k_min,
                            steps=a.steps, threads=a.threads, n_ctx=a.ctx_size, beside=a.beside,
                            sample=a.fixation_sample)
    best = max(scores, key=lambda s: (s.agreement, -s.layer))
    print(f"| layer | agreement with dense decoding at ratio {a.ratio:g} (1 - token edit distance "
          f"/ length, free-running, {a.steps} steps per page) |\n|---|---|")
    for s in scores:
        print(f"| {s.layer}{' (chosen)' if s is best else ''} | {s.agreement:.4f} |")
    print(f"\nsaved: {out}  (used by --focal-layers auto for this model file)")
    return 0


def cmd_serve(a) -> int:
    try:
        import uvicorn

        from .server import create_app
    except ImportError as e:
        raise SystemExit(f"foveate serve needs the server extra: pip install 'foveate[server]' "
                         f"(or '.[server]' in a checkout): {e}") from None
    from .api import Reader

    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_key:
        print(f"foveate serve: WARNING: listening on {a.host} without --api-key: anyone who can "
              f"reach this port can use the server", file=sys.stderr)
    if a.parallel < 1:
        raise ValueError(f"-np must be at least 1, got {a.parallel}")
    if a.ctx_size is None:
        a.ctx_size = 4096 * a.parallel
    reader = Reader(a.model, a.mmproj, parallel=a.parallel, preset=a.preset, **_engine_kwargs(a))
    app = create_app(reader, a.model_name or Path(a.model).stem, api_key=a.api_key,
                     queue=a.queue, max_image_bytes=int(a.max_image_mb * (1 << 20)),
                     allow_local_files=a.allow_local_files, parallel=a.parallel)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0


def cmd_info(a) -> int:
    from ..native import bindings as B

    print(f"libraries: {B.LIB_DIR}")
    print(f"backends: {', '.join(B.backends())}")
    print(f"llama.cpp: {B.llama_build_info()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="foveate", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            title="commands (foveate COMMAND -h for each one's flags)")

    r = sub.add_parser("read", help="transcribe images, PDFs, multi-page TIFFs or folders",
                       formatter_class=HELP)
    # "*", not "+": `--ray scans/` takes an input as its ADDRESS, and _ray_address gives it back
    r.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image, PDF, multi-page TIFF, folder of them, or - (stdin)")
    _model_args(r, ctx_default=None)
    r.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                   help="decode up to N pages together (continuous batching; -c is shared, "
                        "its default is 4096 per page)")
    r.add_argument("-p", "--prompt", default=None,
                   help="instruction (default: the --preset's prompt)")
    _preset_arg(r)
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
    r.add_argument("--format", default="markdown", choices=["markdown", "text", "json", "jsonl"],
                   help="output file format with -o (schema: docs/output-format.md)")
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
    r.add_argument("--trace", default=None, metavar="OUT.gif|OUT.png",
                   help="with --fixation and one page: draw where the model looked (.gif: the "
                        "reading path, step by step; .png: a heat map)")
    _fixation_args(r)
    _merge_args(r)
    _ray_args(r)
    r.set_defaults(fn=cmd_read)

    b = sub.add_parser("bench", help="time encode, prefill and decode", formatter_class=HELP)
    _model_args(b, need_mmproj=False, ctx_default=None)
    b.add_argument("--image", default=None, help="page image (real projector path)")
    b.add_argument("--image-tokens", type=int, default=None,
                   help="inject N random image embeddings instead of an image")
    b.add_argument("-n", "--n-decode", type=int, default=32, help="tokens to decode (EOS ignored)")
    b.add_argument("-r", "--repetitions", type=int, default=3, help="runs per row (the median is shown)")
    b.add_argument("--fixation", default="", metavar="R1,R2",
                   help="add a row per fixation ratio (decoded from the same prefilled cache)")
    b.add_argument("--fixation-k-min", type=int, default=16, help="at least this many image tokens")
    b.add_argument("--focal-layers", default="auto",
                   help="auto (calibrated, else a third of the depth) or layer indices: 7,12")
    b.add_argument("--fixation-refresh", type=int, default=1, metavar="R",
                   help="focal layers re-select every R-th step (fixation rows)")
    b.add_argument("--fixation-sample", type=int, default=64, metavar="N",
                   help="compensation sample of N image tokens (fixation rows; 0 = off)")
    b.add_argument("--merge", default="", metavar="M1,M2",
                   help="add a row per merge setting (keep ratio or auto) beside merging off")
    _merge_score_arg(b)
    b.add_argument("--fill", choices=("prefill", "state"), default="prefill",
                   help="with --image-tokens: prefill the N embeddings (default), or load N "
                        "image cells as a sequence state (decode rows only; for 16k tokens "
                        "through full-depth models)")
    b.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                   help="decode N sequences together (each attends to the same synthetic page); "
                        "with --pages: rows for 1, 2, 4 ... N pages in flight")
    b.add_argument("--pages", type=int, default=None, metavar="K",
                   help="read K held-out generated pages through Reader.read_many (needs "
                        "--mmproj; -n is the token limit per page)")
    b.add_argument("--page-time", action="store_true",
                   help="the time one page takes, by phase (encode, merge, prefill, decode of -n "
                        "tokens; -n 800 is a page): dense, --fixation (one ratio, default 0.05), "
                        "--merge (one setting, default auto), both, and --stock; needs --image")
    b.add_argument("--stock", action="store_true",
                   help="add a row for unpatched llama.cpp's llama-bench on the same model "
                        "(built into the cache on first use, ~5 min)")
    b.set_defaults(fn=cmd_bench)

    mk = sub.add_parser("make-model", help="write random-weight GGUFs with real OCR models' "
                                           "shapes (for tests and timing; outputs are noise)", formatter_class=HELP)
    mk.add_argument("out", help="output folder")
    mk.add_argument("--shape", default="tiny",
                    help="tiny | qwen2.5-vl-3b | qwen2.5-vl-7b | deepseek-ocr | another family's "
                         "shape (`foveate models` lists them)")
    mk.add_argument("--vocab", type=int, default=None,
                    help="pad the character vocab only to this size instead of the real "
                         "model's (smaller files; other families than tiny/qwen2.5/deepseek-ocr)")
    mk.add_argument("--layers", type=int, default=None, help="cut text and vision depth")
    mk.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    mk.add_argument("--quantize", nargs="*", default=[],
                    help="also write these quantizations, e.g. Q8_0 Q4_K_M (default: none)")
    mk.set_defaults(fn=cmd_make_model)

    mo = sub.add_parser("models", help="the OCR model families foveate knows, what it "
                                       "supports for each, their prompt presets; with -m and "
                                       "--mmproj, which family a GGUF pair is", formatter_class=HELP)
    mo.add_argument("-m", "--model", default=None, help="language model GGUF")
    mo.add_argument("--mmproj", default=None, help="its image projector GGUF")
    mo.set_defaults(fn=cmd_models)

    pg = sub.add_parser("pages", help="write synthetic pages (PNG) with ground truth (TXT)", formatter_class=HELP)
    pg.add_argument("out", help="output folder")
    pg.add_argument("--split", default="heldout", choices=["train", "heldout"],
                    help="heldout pages are never used in training")
    pg.add_argument("--start", type=int, default=0, help="first page index")
    pg.add_argument("--count", type=int, default=8, help="how many pages")
    pg.add_argument("--layout", default="grid", choices=["grid", "document"],
                    help="grid: lines fill the page (the bundled reader's format); document: "
                         "margins, line spacing, blank lower page (the layout reader's)")
    pg.add_argument("--rows", type=int, default=None,
                    help="lines per page (grid: 16; document: 6-12)")
    pg.add_argument("--cols", type=int, default=None, help="page width in cells (24)")
    pg.set_defaults(fn=cmd_pages)

    ev = sub.add_parser("eval", help="character error rate on pages with .txt ground truth", formatter_class=HELP)
    ev.add_argument("pages", nargs="+", help="page images or folders of them")
    _model_args(ev)
    ev.add_argument("-n", "--n-predict", type=int, default=1024, help="max tokens per page")
    _fixation_args(ev)
    _merge_args(ev)
    ev.set_defaults(fn=cmd_eval)

    ca = sub.add_parser("calibrate", help="choose fixation's focal layer for a model", formatter_class=HELP)
    ca.add_argument("pages", nargs="+", help="page images (or folders of .png)")
    ca.add_argument("-m", "--model", required=True, help="language model GGUF")
    ca.add_argument("--mmproj", required=True, help="image projector GGUF")
    ca.add_argument("--ratio", type=float, default=0.05, help="fixation ratio the layers are scored at")
    ca.add_argument("--fixation-k-min", type=int, default=16, help="at least this many image tokens")
    ca.add_argument("--fixation-sample", type=int, default=64, metavar="N",
                    help="compensation sample during the fixation runs (0 = off)")
    ca.add_argument("--steps", type=int, default=256, help="decode steps per page (at most)")
    ca.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all)")
    ca.add_argument("-c", "--ctx-size", type=int, default=4096, help="context size (n_ctx)")
    ca.add_argument("--beside", action="store_true",
                    help="also write MODEL.focal.json next to the model file (ships the calibration)")
    ca.set_defaults(fn=cmd_calibrate)

    sv = sub.add_parser("serve", help="OpenAI-compatible OCR server (pip install '.[server]')",
                        formatter_class=HELP)
    _model_args(sv, ctx_default=None)
    sv.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                    help="requests decoding together (continuous batching; -c is shared, its "
                         "default is 4096 per request)")
    _preset_arg(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8080, help="port to listen on")
    sv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY")
    sv.add_argument("--model-name", default=None, help="the model id clients use (default: the file name)")
    sv.add_argument("--queue", type=int, default=16, help="requests that may wait; more get 503")
    sv.add_argument("--max-image-mb", type=float, default=32.0, help="largest image or PDF accepted")
    sv.add_argument("--allow-local-files", action="store_true",
                    help="accept file:// image URLs (paths on the server's machine)")
    _fixation_args(sv)
    _merge_args(sv)
    sv.set_defaults(fn=cmd_serve)

    i = sub.add_parser("info", help="show the loaded libraries and patch series", formatter_class=HELP)
    i.set_defaults(fn=cmd_info)

    a = ap.parse_args(argv)
    try:
        return a.fn(a)
    except ValueError as e:  # bad option values (e.g. --fixation 2)
        print(f"foveate: {e}", file=sys.stderr)
        return 2
    except FoveateError as e:
        print(f"foveate: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
