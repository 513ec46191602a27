"""Fixation (decode-time top-k visual KV selection) through the real llama.cpp path, on the
bundled reading model: stock equivalence at ratio 1, the selection's budget and range, FA
on/off agreement, graph reuse, argument checks. Fidelity numbers: docs/benchmarks.md."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from foveate.native import bindings as B
from foveate.engine.core import Engine

llama = B.llama
ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader" / "foveate-reader-q8_0.gguf"
MMPROJ = ROOT / "models" / "reader" / "foveate-reader-mmproj-f16.gguf"
PAGE = ROOT / "tests" / "data" / "pages" / "heldout-00000.png"
IMAGE_TOKENS = 408  # 24 x 17 cells (16 lines + the bottom margin row)


def _page_logits(eng, page=PAGE, steps: int = 12, after_step=None) -> np.ndarray:
    """Prefill the page, then teacher-force the greedy tokens of the run; logits per step
    (after_step() runs after each step's decode)."""
    from foveate.inputs.images import load_page

    n_past, _ = eng.prefill_page(load_page(page))
    out = []
    for _ in range(steps):
        out.append(eng.logits().copy())
        eng._decode_one(int(out[-1].argmax()), n_past)
        n_past += 1
        if after_step:
            after_step()
    return np.stack(out)


def _logits_run(steps: int = 12, **kw) -> tuple[np.ndarray, Engine]:
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, **kw)
    return _page_logits(eng, steps=steps), eng


@pytest.mark.parametrize("flash_attn,refresh", [(True, 1), (False, 1), (True, 3)])
def test_ratio_one_is_bit_identical_to_off(flash_attn, refresh):
    off, e0 = _logits_run(flash_attn=flash_attn)
    one, e1 = _logits_run(flash_attn=flash_attn, fixation=1.0, fixation_refresh=refresh)
    assert np.array_equal(off, one)
    e0.close(), e1.close()


def test_sparse_path_runs_and_selects_the_budget():
    off, e0 = _logits_run(flash_attn=True)
    sparse, eng = _logits_run(flash_attn=True, fixation=0.05, fixation_k_min=4)
    assert not np.array_equal(off, sparse)           # the sparse path really ran
    assert (off.argmax(1) == sparse.argmax(1)).mean() >= 0.5
    sel = eng.fixation_selection(0)
    assert len(sel) == math.ceil(0.05 * IMAGE_TOKENS)
    assert sel == sorted(set(sel)) and 0 <= sel[0] and sel[-1] < IMAGE_TOKENS
    e0.close(), eng.close()


def _prompt_logits(prompt: str, **kw) -> tuple[np.ndarray, int]:
    """The logits of the prefill (no decode step) and how many tokens follow the image."""
    from foveate.inputs.images import load_page

    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, flash_attn=True, **kw)
    try:
        _, st = eng.prefill_page(load_page(PAGE), prompt)
        text = eng.format_prompt(prompt).encode()
        after = text[text.index(eng.marker.encode()) + len(eng.marker.encode()):]
        buf = (llama.llama_token * (len(after) + 8))()
        n_after = llama.llama_tokenize(eng._vocab, after, len(after), buf, len(buf), False, True)
        return eng.logits().copy(), n_after
    finally:
        eng.close()


def test_a_short_prompt_after_the_image_prefills_dense():
    """Fixation acts on decode steps only: a text chunk after the image that fits under
    fixation's max_tokens (a short prompt; a tiled page's markers between its image chunks)
    is still prefill, computed as stock computes it (llama_fixation_hold)."""
    off, n_after = _prompt_logits("A")
    # this reader's template puts 15 tokens after the image: with max_tokens 16 a ubatch of
    # that chunk is decode-sized, as a tiled page's 2-3 marker tokens are at the default 8
    assert 1 <= n_after <= 16
    on, _ = _prompt_logits("A", fixation=0.05, fixation_k_min=4, fixation_max_tokens=16)
    assert np.array_equal(off, on)


def test_a_mass_budget_keeps_fewer_cells_where_the_focal_layer_is_sure():
    """llama_fixation_set_mass: the ratio's budget becomes a ceiling; on the bundled reader
    the focal layer's image attention is so peaked that 90% of it lies in fewer than k_min
    cells, so each refreshed step keeps k_min (the ratio alone keeps its 41)."""
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, flash_attn=True,
                 fixation=0.1, fixation_k_min=8)
    try:
        assert B.fixation.llama_fixation_set_mass(eng._ctx, 1.5) != 0    # (0, 1] or 0 = off
        assert B.fixation.llama_fixation_set_mass(eng._ctx, 0.9) == 0
        sizes = []
        _page_logits(eng, steps=6, after_step=lambda: sizes.append(len(eng.fixation_selection(0))))
        assert all(8 <= n < math.ceil(0.1 * IMAGE_TOKENS) for n in sizes), sizes
        assert B.fixation.llama_fixation_set_mass(eng._ctx, 0.0) == 0
        sizes.clear()
        _page_logits(eng, steps=3, after_step=lambda: sizes.append(len(eng.fixation_selection(0))))
        assert sizes == [math.ceil(0.1 * IMAGE_TOKENS)] * 3
    finally:
        eng.close()


def _selections(steps, **kw):
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, flash_attn=True, **kw)
    sels = []
    logits = _page_logits(eng, steps=steps, after_step=lambda: sels.append(eng.fixation_selection(0)))
    return sels, logits, eng


def test_refresh_interval_keeps_the_selection_between_refreshes():
    """R = 3: the focal layer re-selects at steps 0, 3, 6, ...; in between it attends to the
    previous selection and passes it on unchanged, without rebuilding the graph."""
    k = math.ceil(0.05 * IMAGE_TOKENS)
    sels, _, eng = _selections(12, fixation=0.05, fixation_k_min=4, fixation_refresh=3)
    assert all(len(s) == k for s in sels)
    for t in range(12):
        if t % 3:
            assert sels[t] == sels[t - 1], f"step {t} is not a refresh step but its selection moved"
    assert len({tuple(sels[t]) for t in (0, 3, 6, 9)}) > 1, "refresh steps never moved the selection"
    assert llama.llama_perf_context(eng._ctx).n_reused >= 9
    eng.close()
    # R = 1 (the default) re-selects every step: the reading head moves more often
    every, _, eng = _selections(12, fixation=0.05, fixation_k_min=4)
    assert sum(every[t] != every[t - 1] for t in range(1, 12)) > sum(
        sels[t] != sels[t - 1] for t in range(1, 12))
    eng.close()


def test_fa_on_and_off_select_alike():
    a, ea = _logits_run(flash_attn=True, fixation=0.1, fixation_k_min=4)
    b, eb = _logits_run(flash_attn=False, fixation=0.1, fixation_k_min=4)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    ea.close(), eb.close()


def test_a_page_reads_the_same_after_another_page():
    """A new page's first step must not be warm-started from the previous page's selection
    (both pages put their image in the same cells): results do not depend on history."""
    kw = dict(n_ctx=2048, threads=2, flash_attn=True, fixation=0.05, fixation_k_min=4)
    other = PAGE.with_name("heldout-00001.png")
    eng = Engine(str(MODEL), str(MMPROJ), **kw)
    _page_logits(eng, other, steps=20)
    after = _page_logits(eng, PAGE)
    eng.close()
    eng = Engine(str(MODEL), str(MMPROJ), **kw)
    fresh = _page_logits(eng, PAGE)
    eng.close()
    assert np.array_equal(after, fresh)


def test_decode_graph_is_reused_with_fixation():
    _, eng = _logits_run(steps=20, flash_attn=True, fixation=0.05)
    perf = llama.llama_perf_context(eng._ctx)
    assert perf.n_reused >= 15, f"graph rebuilt too often: reused {perf.n_reused} of 20 steps"
    eng.close()


def test_stats_report_attended_tokens_and_focal_layers():
    from foveate.surface.api import Reader

    r = Reader(str(MODEL), str(MMPROJ), n_ctx=2048, fixation=0.05, fixation_k_min=4,
               focal_layers=[2]).read(PAGE, max_tokens=30)
    assert r.stats.focal_layers == [2]
    k = math.ceil(0.05 * IMAGE_TOKENS)
    assert r.stats.visual_tokens_selected == pytest.approx(k)
    # 4 layers: 0-1 warm start (k cells; all at the first step), 2 dense, 3 the selection
    assert (2 * k + IMAGE_TOKENS + k) / 4 <= r.stats.visual_tokens_attended < IMAGE_TOKENS
    off = Reader(str(MODEL), str(MMPROJ), n_ctx=2048).read(PAGE, max_tokens=30)
    assert off.stats.focal_layers == [] and off.stats.visual_tokens_attended == IMAGE_TOKENS


def test_compensation_sample_enters_sparse_layers_only():
    """The sample changes the sparse path's logits and is counted as attended; with it off
    the op runs without it (ratio 1 stays the stock graph: test_ratio_one_... runs with the
    default sample)."""
    kw = dict(flash_attn=True, fixation=0.05, fixation_k_min=4)
    with_sample, e1 = _logits_run(**kw)
    without, e0 = _logits_run(fixation_sample=0, **kw)
    assert not np.array_equal(with_sample, without)
    assert (with_sample.argmax(1) == without.argmax(1)).mean() >= 0.5
    # 4 layers, focal layer 3 (the shipped calibration): layers 0-2 sparse; after the first
    # step each adds up to 64 sample cells (fewer where a sample cell is selected)
    a1 = B.fixation.llama_fixation_get_attended(e1._ctx)
    a0 = B.fixation.llama_fixation_get_attended(e0._ctx)
    assert 0 < a1 - a0 <= 3 * 64 / 4
    e1.close(), e0.close()


@pytest.mark.parametrize("kw,msg", [(dict(fixation=1.5), "ratio"), (dict(fixation=-0.1), "ratio"),
                                    (dict(fixation=0.05, focal_layers=[99]), "out of range"),
                                    (dict(fixation=0.05, fixation_k_min=0), "k_min"),
                                    (dict(fixation=0.05, fixation_refresh=0), "refresh"),
                                    (dict(fixation=0.05, fixation_sample=-1), "sample"),
                                    (dict(fixation=0.05, fixation_sample=1.5), "sample")])
def test_bad_fixation_arguments_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Engine(str(MODEL), str(MMPROJ), n_ctx=512, **kw)


@pytest.mark.parametrize("unified", [False, True], ids=["streams", "unified-kv"])
def test_two_sequences_in_one_batch_keep_their_own_selection(unified):
    """Pages A and B decode together (one ubatch, one row each): each row's logits match the
    same page decoded alone, so neither sequence attends to the other's cells."""
    from foveate.inputs.images import load_page

    pages = [load_page(ROOT / "tests" / "data" / "pages" / f"heldout-0000{i}.png") for i in (0, 1)]
    kw = dict(n_ctx=4096, threads=2, flash_attn=True, fixation=0.05, fixation_k_min=4)
    both = Engine(str(MODEL), str(MMPROJ), n_seq=2, kv_unified=unified, **kw)
    n_past = [both.prefill_page(p, seq_id=i, clear=i == 0)[0] for i, p in enumerate(pages)]
    batch = llama.llama_batch_init(2, 0, 1)
    toks, joint = [[], []], [[], []]
    try:
        for step in range(6):
            if step:  # logits of each row of the previous 2-token ubatch
                for i in range(2):
                    joint[i].append(both.logits(i).copy())
            batch.n_tokens = 2
            for i in range(2):
                tok = int(joint[i][-1].argmax()) if step else 10 + i
                toks[i].append(tok)
                batch.token[i], batch.pos[i] = tok, n_past[i] + step
                batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, i, True
            assert llama.llama_decode(both._ctx, batch) == 0
        sel = [both.fixation_selection(i) for i in (0, 1)]
    finally:
        llama.llama_batch_free(batch)
        both.close()
    assert all(len(s) == math.ceil(0.05 * IMAGE_TOKENS) for s in sel)
    for i, page in enumerate(pages):
        alone = Engine(str(MODEL), str(MMPROJ), **kw)
        n, _ = alone.prefill_page(page)
        ref = []
        for step, tok in enumerate(toks[i][:-1]):
            alone._decode_one(tok, n + step)
            ref.append(alone.logits().copy())
        alone.close()
        got = np.stack(joint[i][:len(ref)])
        ref = np.stack(ref)
        assert (got.argmax(1) == ref.argmax(1)).all()
        assert np.abs(got - ref).max() < 1e-2 * np.abs(ref).max(), f"sequence {i} leaked"


def test_a_calibration_beside_the_model_is_used_only_for_that_file(tmp_path, monkeypatch):
    import json
    import shutil

    from foveate.engine.focal_store import cache_dir, fingerprint, saved_focal_layers, sidecar

    monkeypatch.setenv("FOVEATE_CACHE_DIR", str(tmp_path / "cache"))
    m = tmp_path / "m.gguf"
    shutil.copy(MODEL, m)
    assert saved_focal_layers(m) is None                     # nothing saved: the default layer
    sidecar(m).write_text(json.dumps({"fingerprint": fingerprint(m), "focal_layers": [2]}))
    assert saved_focal_layers(m) == [2]
    sidecar(m).write_text(json.dumps({"fingerprint": "0" * 32, "focal_layers": [2]}))
    assert saved_focal_layers(m) is None                     # made for another file
    sidecar(m).write_text("not json")
    assert saved_focal_layers(m) is None
    sidecar(m).write_text(json.dumps({"fingerprint": fingerprint(m), "focal_layers": [2]}))
    cache_dir().mkdir(parents=True)
    (cache_dir() / f"{fingerprint(m)}.json").write_text(json.dumps({"focal_layers": [1]}))
    assert saved_focal_layers(m) == [1]                      # the user's own calibration wins


@pytest.mark.parametrize("name", ["foveate-reader-q8_0", "foveate-reader-q4_k_m", "foveate-reader-f16",
                                  "foveate-reader-1d-q8_0", "foveate-reader-layout-q8_0"])
def test_bundled_models_ship_their_calibration(tmp_path, monkeypatch, name):
    """`calibrate --beside` files for the bundled models, still matching their model files
    (a re-exported model without a new calibration fails here)."""
    import json

    from foveate.engine.focal_store import saved_focal_layers, sidecar

    monkeypatch.setenv("FOVEATE_CACHE_DIR", str(tmp_path))
    model = MODEL.parent / f"{name}.gguf"
    shipped = json.loads(sidecar(model).read_text())
    assert saved_focal_layers(model) == shipped["focal_layers"]
    assert max(shipped["table"], key=lambda s: s["agreement"])["layer"] == shipped["focal_layers"][0]


def test_calibrate_saves_a_layer_that_auto_uses(tmp_path, monkeypatch):
    from foveate.surface.api import Reader
    from foveate.engine.focal_store import saved_focal_layers
    from foveate.instruments.calibrate import calibrate

    monkeypatch.setenv("FOVEATE_CACHE_DIR", str(tmp_path))
    scores, out = calibrate(str(MODEL), str(MMPROJ), [PAGE], ratio=0.05, k_min=4, steps=12,
                            layers=[0, 3], n_ctx=2048, threads=2)
    assert [s.layer for s in scores] == [0, 3] and out.is_file()
    assert all(0.0 <= s.agreement <= 1.0 for s in scores)
    best = max(scores, key=lambda s: (s.agreement, -s.layer)).layer
    assert saved_focal_layers(str(MODEL)) == [best]
    r = Reader(str(MODEL), str(MMPROJ), n_ctx=2048, fixation=0.05, fixation_k_min=4).read(
        PAGE, max_tokens=8)
    assert r.stats.focal_layers == [best]


LAYOUT_MODEL = ROOT / "models" / "reader" / "foveate-reader-layout-q8_0.gguf"
DOC_PAGES = ROOT / "tests" / "data" / "pages-document"


def _doc_accuracy(**kw) -> float:
    from foveate.surface.api import Reader
    from foveate.instruments.evaluate import evaluate, page_pairs

    reader = Reader(str(LAYOUT_MODEL), str(MMPROJ), n_ctx=2048, threads=2, flash_attn=True, **kw)
    return evaluate(reader, page_pairs([DOC_PAGES]), max_tokens=600).accuracy


@pytest.fixture(scope="module")
def doc_dense_accuracy():
    return _doc_accuracy()


def test_fixation_fidelity_on_document_pages(doc_dense_accuracy):
    """Ratio 0.05 with compensation (the default sample) keeps the layout reader's accuracy
    on its 5 committed pages (25 pages: docs/benchmarks.md, 99.3% of dense). The bar is looser
    than the 99% target (5 pages are noisy) but far above what fixation without compensation
    reads (about 81% of dense)."""
    acc = _doc_accuracy(fixation=0.05, fixation_k_min=4)
    assert acc >= 0.97 * doc_dense_accuracy, f"{acc:.4f} vs dense {doc_dense_accuracy:.4f}"


@pytest.mark.parametrize("kv", ["q8_0", "q4_0"])
def test_fixation_runs_on_a_quantized_kv_cache_on_the_cpu(kv):
    """-ctk/-ctv q8_0 or q4_0 (flash attention, as llama.cpp needs for a quantized V): on the
    CPU the fixation ops read quantized K and V, so fixation runs (no off reason), selects
    its budget, and ratio 1 is still the stock computation bit for bit."""
    from foveate.inputs.images import load_page

    quant = dict(flash_attn=True, cache_type_k=kv, cache_type_v=kv)
    off, e0 = _logits_run(**quant)
    one, e1 = _logits_run(fixation=1.0, **quant)
    assert np.array_equal(off, one)
    sparse, eng = _logits_run(fixation=0.05, fixation_k_min=4, **quant)
    assert len(eng.fixation_selection(0)) == math.ceil(0.05 * IMAGE_TOKENS)
    assert (off.argmax(1) == sparse.argmax(1)).mean() >= 0.5
    from foveate.engine.core import Stats
    st = Stats(image_tokens=IMAGE_TOKENS)
    eng._fixation_stats(st)
    assert st.fixation_off == "" and st.visual_tokens_selected == math.ceil(0.05 * IMAGE_TOKENS)
    for e in (e0, e1, eng):
        e.close()


def test_an_unknown_kv_cache_type_is_refused():
    with pytest.raises(ValueError, match="KV cache type must be one of .*got 'q9'"):
        Engine(str(MODEL), str(MMPROJ), n_ctx=512, cache_type_k="q9")


def test_the_cli_takes_llama_cpp_kv_cache_flags():
    """-ctk / -ctv as llama.cpp spells them: a q8_0 cache on the CPU reads with fixation on
    (no off reason in the JSON), and a type llama.cpp does not have is an argparse error."""
    import json
    import subprocess
    import sys

    base = [sys.executable, "-m", "foveate", "read", str(PAGE), "-m", str(MODEL),
            "--mmproj", str(MMPROJ), "-n", "16"]
    r = subprocess.run(base + ["-ctk", "q8_0", "-ctv", "q8_0", "--fixation", "0.05", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)   # --json: one record per page
    st = (doc[0] if isinstance(doc, list) else doc)["stats"]
    assert st["fixation_off"] is None and st["fixation_selected_per_step"] < st["image_tokens"]
    bad = subprocess.run(base + ["-ctk", "q3"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "invalid choice: 'q3'" in bad.stderr
