"""`foveate calibrate`: choose fixation's focal layer for a model."""
from __future__ import annotations

from pathlib import Path

from . import flags as F


def add_parser(sub) -> None:
    ca = sub.add_parser("calibrate", help="choose fixation's focal layer for a model", formatter_class=F.HELP)
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


def cmd_calibrate(a) -> int:
    from ...instruments.calibrate import calibrate
    from ...instruments.evaluate import page_pairs

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
