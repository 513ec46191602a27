"""Bench rows per OCR family (docs/benchmarks.md, "Every family"): each family's generated
text model at its real width and vocab, cut to `layers` layers (stated in the table), with
that family's image-token count for a letter-size page (8.5 x 11 in at 150 dpi, counted by
its own projector's rules: tokenized, not encoded), prefill with merging 0.84 vs off and
decode with fixation 0.05 vs off, side by side in one run. The image tokens are synthetic
(instruments/synthetic_kv.py): the text model's costs do not depend on their values."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..engine.core import Engine
from ..engine.families import BY_KEY
from ..inputs.images import Page
from .bench import run_configs, run_merge_configs

LETTER_150DPI = (1275, 1650)
# the family's shape benched (the smallest real size of each)
SHAPES = {"qwen2vl": "qwen2-vl-2b", "qwen25vl": "qwen2.5-vl-3b", "qwen3vl": "qwen3-vl-2b",
          "deepseekocr": "deepseek-ocr", "deepseekocr2": "deepseek-ocr-2",
          "paddleocr": "paddleocr-vl", "lightonocr": "lightonocr-1b", "dotsocr": "dots-ocr",
          "glm4v": "glm-4.1v-9b", "glmocr": "glm-ocr", "hunyuanvl": "hunyuan-ocr",
          "idefics3": "granite-docling-258m", "lfm2vl": "lfm2-vl-450m", "qwen35": "qwen3.5-0.8b",
          "internvl": "internvl3-1b", "granite4vision": "granite-vision-4.1-4b",
          "minicpmv46": "minicpm-v-4.6"}


def write_family(key: str, out: Path, layers: int):
    shape = SHAPES[key]
    if shape == "deepseek-ocr":
        from .shapes.deepseek_ocr_shape import write_deepseek_ocr_pair
        return write_deepseek_ocr_pair(out, layers=layers)
    if shape.startswith("qwen2.5-vl"):
        from .shapes.tiny_model import make_shape, write_tiny_pair
        return write_tiny_pair(out, make_shape(shape, layers), name=shape)
    from .shapes import write_shape_pair
    return write_shape_pair(shape, out, layers=layers)


def letter_page() -> Page:
    w, h = LETTER_150DPI
    return Page(name="letter-150dpi", width=w, height=h, rgb=bytes([255]) * (w * h * 3))


def family_rows(key: str, work: Path, layers: int = 4, n_decode: int = 16,
                repetitions: int = 1, threads: int | None = None):
    """(shape, image tokens, rows) for one family; its files are removed afterwards."""
    out = work / key
    model, mmproj = write_family(key, out, layers)
    try:
        with_proj = Engine(str(model), str(mmproj), n_ctx=512, threads=threads)
        try:
            n = with_proj.image_token_count(letter_page())
        finally:
            with_proj.close()
        eng = Engine(str(model), None, n_ctx=n + n_decode + 64, threads=threads, flash_attn=True)
        try:
            rows = run_merge_configs(eng, image_tokens=n, n_decode=n_decode,
                                     merges=("off", 0.84), repetitions=repetitions)
            rows += run_configs(eng, image_tokens=n, n_decode=n_decode, fixations=(0.0, 0.05),
                                repetitions=max(repetitions, 2))
        finally:
            eng.close()
        return SHAPES[key], n, rows
    finally:
        shutil.rmtree(out, ignore_errors=True)


def format_family_rows(results) -> str:
    """results: [(family key, shape, image tokens, rows)] -> one markdown table."""
    lines = ["| family | shape | image tokens | prefill off (ms) | prefill merge 0.84 (ms) | "
             "prefill ratio | decode off (tok/s) | decode fixation 0.05 (tok/s) | decode ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, shape, n, rows in results:
        by = {r.config.split(" (")[0]: r for r in rows}
        m_off, m84 = by["foveate, merge off"], by["foveate, merge 0.84"]
        f_off = by["foveate, fixation off"]
        f05 = next(r for r in rows if r.config.startswith("foveate, fixation 0.05"))
        lines.append(
            f"| {BY_KEY[key].name} | {shape} | {n} | {m_off.prefill_ms:.0f} | {m84.prefill_ms:.0f} | "
            f"{m_off.prefill_ms / m84.prefill_ms:.2f}x | {f_off.decode_tok_s:.2f} | "
            f"{f05.decode_tok_s:.2f} | {f05.decode_tok_s / f_off.decode_tok_s:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m foveate.instruments.bench_families",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", default=list(SHAPES), help="family keys (default: all)")
    ap.add_argument("--layers", type=int, default=4, help="text layers of each model")
    ap.add_argument("-n", "--n-decode", type=int, default=16, help="tokens decoded per row")
    ap.add_argument("-r", "--repetitions", type=int, default=1, help="runs per row (median)")
    ap.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all)")
    a = ap.parse_args(argv)
    unknown = [k for k in a.families if k not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown family {unknown[0]!r}; known: {', '.join(SHAPES)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in a.families:
            shape, n, rows = family_rows(key, Path(tmp), a.layers, a.n_decode, a.repetitions,
                                         a.threads)
            results.append((key, shape, n, rows))
            print(format_family_rows(results[-1:]).splitlines()[-1], flush=True)
    print(f"\n{a.layers} text layers per model, {a.n_decode} tokens decoded, "
          f"{a.repetitions} repetition(s)\n")
    print(format_family_rows(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
