"""`foveate bench`: time encode, prefill and decode (instruments/bench.py), the page a user
waits for (--page-time, instruments/page_time.py), many pages in flight (--pages), beside
stock llama.cpp (--stock)."""
from __future__ import annotations

import subprocess

from . import flags as F


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time encode, prefill and decode", formatter_class=F.HELP)
    F.model_args(b, need_mmproj=False, ctx_default=None)
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
    F.merge_score_arg(b)
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
    b.add_argument("--encode-profile", action="store_true",
                   help="where the page's vision encode spends its time: per op group (matmuls "
                        "by weight type, attention, norms, RoPE, copies), with FLOPs and rates "
                        "beside this CPU's measured matmul rate per type "
                        "(instruments/encode_profile.py); needs --image and --mmproj")
    b.add_argument("--draft", action="store_true",
                   help="draft-verified decoding: the cost of verifying k = 1..32 tokens in one "
                        "step, then -n tokens of plain greedy decoding beside drafts made from "
                        "its output with 0-10%% of characters wrong, an unrelated text and self "
                        "(instruments/bench_drafts.py); with --image or --image-tokens")
    b.add_argument("--stock", action="store_true",
                   help="add a row for unpatched llama.cpp's llama-bench on the same model "
                        "(built into the cache on first use, ~5 min)")
    b.set_defaults(fn=cmd_bench)


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
    from ...instruments.bench import format_table, median_row, run_configs, run_once
    from ...engine.core import Engine

    if a.pages is not None:
        return _bench_pages(a)
    if a.page_time:
        return _bench_page_time(a)
    if a.draft:
        return _bench_drafts(a)
    if a.encode_profile:
        return _bench_encode_profile(a)
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
    kw = F.engine_kwargs(a)
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
        from ...instruments.bench import run_parallel_configs
        rows = run_parallel_configs(eng, a.image_tokens, a.n_decode, a.parallel, (0.0, *fix),
                                    a.repetitions, a.fixation_k_min, F.focal_layers(a.focal_layers),
                                    a.fixation_refresh, a.fill, a.fixation_sample)
    elif merges:
        from ...instruments.bench import run_merge_configs
        from ...engine.merging import parse_merge
        for m in merges:
            parse_merge(m)
        rows = run_merge_configs(eng, a.image, a.image_tokens or 0, a.n_decode, merges,
                                 a.repetitions)
    elif fix:  # one prefill, then dense and each ratio decode from the same cache
        rows = run_configs(eng, a.image, a.image_tokens or 0, a.n_decode, (0.0, *fix),
                           a.repetitions, a.fixation_k_min, F.focal_layers(a.focal_layers),
                           a.fixation_refresh, a.fill, a.fixation_sample)
    else:
        run_once(eng, a.image, a.image_tokens or 0, min(4, a.n_decode), a.fill)  # warm-up
        rows = [median_row([run_once(eng, a.image, a.image_tokens or 0, a.n_decode, a.fill)
                            for _ in range(a.repetitions)])]
    if a.stock:
        from ...instruments.bench import stock_rows
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


def _bench_drafts(a) -> int:
    from ...engine.core import Engine
    from ...instruments.bench_drafts import draft_rows, format_costs, format_rows, verify_costs

    if (a.image is None) == (a.image_tokens is None):
        raise SystemExit("foveate bench: give exactly one of --image or --image-tokens")
    if a.image is not None and not a.mmproj:
        raise SystemExit("foveate bench: --image needs --mmproj")
    if a.fixation or a.merge or a.stock or a.parallel > 1:
        raise SystemExit("foveate bench: --draft runs alone (no --fixation, --merge, --stock, -np)")
    if a.ctx_size is None:
        a.ctx_size = bench_ctx_size(a.image_tokens, a.n_decode + 64, 1)
    kw = F.engine_kwargs(a)
    kw.pop("merge", None)
    eng = Engine(a.model, a.mmproj, **kw)
    try:
        costs = verify_costs(eng, a.image, a.image_tokens or 0, repetitions=max(3, a.repetitions))
        print(f"model: {a.model}\nthreads: {eng.threads}  n_ctx: {eng.n_ctx}  flash attn: "
              f"{kw.get('flash_attn')}  decode tokens: {a.n_decode}\n")
        print("verifying k tokens in one step (median ms):\n" + format_costs(costs) + "\n",
              flush=True)
        rows, kind = draft_rows(eng, a.image, a.image_tokens or 0, a.n_decode,
                                repetitions=a.repetitions)
        print(f"decoding with drafts (errors put in the output's {kind}):\n" + format_rows(rows))
    finally:
        eng.close()
    return 0


def _one_page_settings(a, what: str) -> dict:
    """The Engine settings of a bench that runs one real page (--page-time, --encode-profile):
    it needs --image and --mmproj; -c defaults to 8192; merging is the bench's own rows."""
    if a.image is None or not a.mmproj:
        raise SystemExit(f"foveate bench: {what} one real page: give --image and --mmproj")
    if a.ctx_size is None:
        a.ctx_size = 8192
    kw = F.engine_kwargs(a)
    kw.pop("merge", None)
    return kw


def _bench_page_time(a) -> int:
    from ...engine.core import Engine
    from ...instruments.page_time import format_page_table, run_page_time, stock_row

    kw = _one_page_settings(a, "--page-time reads")
    fix = [float(x) for x in a.fixation.split(",")] if a.fixation else [0.05]
    merges = [m.strip() for m in a.merge.split(",")] if a.merge else ["auto"]
    if len(fix) != 1 or len(merges) != 1 or not 0 < fix[0] <= 1 or merges[0] == "off":
        raise SystemExit("foveate bench: --page-time takes one --fixation ratio in (0, 1] and one "
                         "--merge setting (a keep ratio or auto)")
    if kw.get("flash_attn") is None:
        kw["flash_attn"] = True  # the same FA setting for every row
    eng = Engine(a.model, a.mmproj, **kw)
    rows, n_prompt = run_page_time(eng, a.image, a.n_decode, fix[0], merges[0],
                                   (a.fixation_k_min, F.focal_layers(a.focal_layers), a.fixation_refresh,
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


def _bench_encode_profile(a) -> int:
    from ...engine.core import Engine
    from ...instruments.encode_profile import encode_profile, format_profile, peak_gflops

    eng = Engine(a.model, a.mmproj, **_one_page_settings(a, "--encode-profile encodes"))
    groups, plain_ms, profiled_ms = encode_profile(eng, a.image)
    print(f"mmproj: {a.mmproj}\npage: {a.image}  threads: {eng.threads}\n")
    print(format_profile(groups, plain_ms, profiled_ms, peak_gflops(eng.threads)))
    return 0


def _bench_pages(a) -> int:
    from ...instruments.bench_pages import format_pages_table, run_pages

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
