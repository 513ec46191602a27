"""Where the model looked: the trace holds, per decode step, exactly the selection the C API
reports for that step, mapped to the projector's grid (through the kept ids when merged),
and the pictures drawn from it are real images of the page."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"
PAGE = READER / "sample-page.png"
STEPS = 40


def _manual_selections(eng, merge_kept: bool) -> tuple[list[int], list[list[int]]]:
    """Greedy decoding step by step through the engine's own calls: the token of each step and
    llama_fixation_get_last after it (grid ids, through the kept ids when merged)."""
    from foveate.inputs.images import load_page

    n_past, _ = eng.prefill_page(load_page(PAGE))
    kept = eng.merge_kept() if merge_kept else None
    toks, sels = [], []
    for _ in range(STEPS):
        tok = int(np.argmax(eng.logits()))
        toks.append(tok)
        eng._decode_one(tok, n_past)
        n_past += 1
        sel = eng.fixation_selection(0)
        sels.append([kept[o] for o in sel] if kept is not None else sel)
    return toks, sels


@pytest.mark.parametrize("merge", [None, 0.84])
def test_trace_steps_are_the_c_api_selections(merge):
    from foveate import Reader

    with Reader(MODEL, MMPROJ, threads=2, fixation=0.05, merge=merge) as rd:
        res = rd.read(PAGE, max_tokens=STEPS, trace=True)
        tr = res.trace
        assert tr.grid == (24, 17) and tr.image_size == (672, 476)
        assert (tr.kept is not None) == (merge is not None)
        assert tr.steps[0].cells == []            # the first token comes from the dense prefill
        _, sels = _manual_selections(rd.engine, merge is not None)
    assert len(tr.steps) == STEPS
    for i in range(1, STEPS):
        assert tr.steps[i].cells == sels[i - 1], f"step {i}"
    assert "".join(s.text for s in tr.steps) == res.text
    k = res.stats.visual_tokens_selected
    assert all(len(s.cells) == round(k) for s in tr.steps[1:])
    if merge is not None:   # selections are among the kept tokens only
        assert all(set(s.cells) <= set(tr.kept) for s in tr.steps)


def test_boxes_tile_the_page():
    from foveate.engine.trace import Trace

    tr = Trace(grid=(24, 17), image_size=(672, 476))
    assert tr.box(0) == (0, 0, 28, 28)
    assert tr.box(24 * 17 - 1) == (644, 448, 672, 476)
    assert tr.box(25) == (28, 28, 56, 56)


def test_trace_pictures(tmp_path):
    from PIL import Image

    args = [sys.executable, "-m", "foveate", "read", str(PAGE), "-m", str(MODEL), "--mmproj",
            str(MMPROJ), "-t", "2", "--fixation", "0.05", "--merge", "0.84", "-n", "60"]
    for out in ("path.gif", "heat.png"):
        r = subprocess.run(args + ["--trace", str(tmp_path / out)], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert f"trace: {tmp_path / out}" in r.stderr
    gif = Image.open(tmp_path / "path.gif")
    assert gif.n_frames == 60                      # a frame a step
    assert gif.width >= 672 and gif.height > 476   # the page, and the text panel below it
    heat = Image.open(tmp_path / "heat.png").convert("RGB")
    page = Image.open(PAGE).convert("RGB").resize((heat.width, round(476 * heat.width / 672)))
    # the heat map tints the page: it differs from the plain page where tokens were attended
    diff = np.abs(np.asarray(heat, int)[:page.height] - np.asarray(page, int)).sum(axis=2)
    assert (diff > 30).mean() > 0.02


def test_trace_needs_fixation_and_one_page(tmp_path):
    base = [sys.executable, "-m", "foveate", "read", str(PAGE), "-m", str(MODEL), "--mmproj",
            str(MMPROJ), "-t", "2"]
    r = subprocess.run(base + ["--trace", str(tmp_path / "t.gif")], capture_output=True, text=True)
    assert r.returncode == 2 and "--trace draws fixation's selections" in r.stderr
    two = base[:4] + [str(PAGE)] + base[4:]
    r = subprocess.run(two + ["--fixation", "0.05", "--trace", str(tmp_path / "t.gif")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--trace draws one page" in r.stderr
    r = subprocess.run(base + ["--fixation", "0.05", "--trace", str(tmp_path / "t.svg")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--trace writes .gif or .png" in r.stderr
