"""`foveate eval`: character error rate on pages with .txt ground truth."""
from __future__ import annotations

import sys

from . import flags as F


def add_parser(sub) -> None:
    ev = sub.add_parser("eval", help="character error rate on pages with .txt ground truth", formatter_class=F.HELP)
    ev.add_argument("pages", nargs="+", help="page images or folders of them")
    F.model_args(ev)
    ev.add_argument("-n", "--n-predict", type=int, default=1024, help="max tokens per page")
    F.fixation_args(ev)
    F.merge_args(ev)
    ev.set_defaults(fn=cmd_eval)


def cmd_eval(a) -> int:
    from ..api import Reader
    from ...instruments.evaluate import evaluate, page_pairs

    missing: list = []
    pairs = page_pairs(a.pages, missing)
    for img in missing:
        print(f"foveate eval: {img}: no ground truth {img.with_suffix('.txt').name} beside "
              f"it; page skipped", file=sys.stderr)
    if not pairs:
        raise SystemExit("foveate eval: no pages with ground truth found")
    reader = Reader(a.model, a.mmproj, **F.engine_kwargs(a))
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
