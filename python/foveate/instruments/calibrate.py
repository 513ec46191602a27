"""`foveate calibrate`: choose the focal layer(s) for fixation on a model.

Method (ours; fixation.md leaves it open): decode a few pages densely (greedy), then for each
candidate layer L decode them again, greedy and free-running, with fixation on and focal layer
L, and score the agreement of the two token sequences (1 - edit distance / dense length). The
best layer is stored with a fingerprint of the model file, and `--focal-layers auto` picks it
up: from the user's cache first, else from `MODEL.focal.json` beside the model file
(`calibrate --beside`; the bundled readers ship theirs) when it was made for that exact file. Compared with the attention-recall proxy of the design notes this measures the quantity we
care about (the output), at the cost of one decode pass per candidate layer. Free-running, not
teacher-forced (sessions 2-5): a per-step top-1 match over the first lines (0.958 for layer 2
of the reader) missed the errors that compound at line ends, and chose a layer whose whole
pages read worse than the last layer's (docs/benchmarks.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..engine.focal_store import cache_dir, fingerprint, sidecar
from ..engine.core import FIXATION_SAMPLE
from ..native import bindings as B

llama = B.llama


@dataclass
class LayerScore:
    layer: int
    agreement: float      # 1 - (token edit distance to the dense run) / (dense tokens), all pages, >= 0


def _greedy(eng, page, steps: int) -> list[int]:
    n_past, _ = eng.prefill_page(page)
    toks = []
    for i in range(max(0, min(steps, eng.n_ctx - n_past))):   # never past the context
        t = int(eng.logits().argmax())
        toks.append(t)
        if llama.llama_vocab_is_eog(eng._vocab, t):
            break
        eng._decode_one(t, n_past + i)
    return toks


def calibrate(model, mmproj, pages, ratio: float = 0.05, k_min: int = 16, steps: int = 256,
              layers: list[int] | None = None, threads: int | None = None,
              n_ctx: int = 4096, beside: bool = False,
              sample: int = FIXATION_SAMPLE) -> tuple[list[LayerScore], Path]:
    """Scores every candidate layer, saves the best in the cache (and, with `beside`, in
    `MODEL.focal.json` next to the model file, to ship with it); returns the scores and the
    path written last."""
    from rapidfuzz.distance import Levenshtein

    from ..engine.core import Engine
    from ..inputs.images import load_page

    if not pages or steps < 1:
        raise ValueError("calibrate needs at least one page and steps >= 1")
    eng = Engine(model, mmproj, n_ctx=n_ctx, threads=threads, flash_attn=True)
    try:
        n_layer = llama.llama_model_n_layer(eng._model)
        cand = layers if layers is not None else list(range(n_layer))
        runs = [(page, _greedy(eng, page, steps)) for page in map(load_page, pages)]
        total = sum(len(toks) for _, toks in runs)
        if total == 0:
            raise ValueError("calibrate: dense decoding produced no tokens (context full?)")
        scores = []
        for layer in cand:
            eng.set_fixation(ratio, k_min, [layer], sample=sample)
            dist = sum(Levenshtein.distance(_greedy(eng, page, steps), toks) for page, toks in runs)
            scores.append(LayerScore(layer, max(0.0, 1.0 - dist / total)))
            eng.set_fixation(0.0)
    finally:
        eng.close()
    best = max(scores, key=lambda s: (s.agreement, -s.layer))
    fp = fingerprint(model)
    record = {"model": str(Path(model).resolve()), "fingerprint": fp, "focal_layers": [best.layer],
              "ratio": ratio, "k_min": k_min, "sample": sample, "steps": steps,
              "pages": [str(p) for p in pages],
              "table": [s.__dict__ for s in scores]}
    out = cache_dir() / f"{fp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    if beside:
        out = sidecar(model)
        record.update(model=Path(model).name, pages=[Path(p).name for p in pages])
        out.write_text(json.dumps(record, indent=1) + "\n")
    return scores, out
