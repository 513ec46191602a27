"""Lifetimes across llama.cpp calls that stock callers make (issue 21, items 1-3):
an aborted fixation step, a state loaded over another page, a merged image's embeddings
copied out by a caller that follows mtmd.h's size contract. Each test fails on the code
before its fix (the first by crashing on the freed input, under glibc's free-perturbation)."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from foveate.engine.core import Engine
from foveate.inputs.images import load_page
from foveate.native import bindings as B

llama, mtmd = B.llama, B.mtmd
ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader" / "foveate-reader-q8_0.gguf"
MMPROJ = ROOT / "models" / "reader" / "foveate-reader-mmproj-f16.gguf"
PAGES = ROOT / "tests" / "data" / "pages"
PAGE_A, PAGE_B = PAGES / "heldout-00001.png", PAGES / "heldout-00000.png"   # same size, same cells
FIX = dict(n_ctx=2048, threads=2, flash_attn=True, fixation=0.05, fixation_k_min=4)


def _steps(eng: Engine, n_past: int, n: int) -> tuple[np.ndarray, list[list[int]]]:
    """n greedy steps from the logits of the last decode: logits and selections per step."""
    logits, sels = [], []
    for _ in range(n):
        logits.append(eng.logits().copy())
        eng._decode_one(int(logits[-1].argmax()), n_past)
        n_past += 1
        sels.append(eng.fixation_selection(0))
    return np.stack(logits), sels


ABORT_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from foveate.engine.core import Engine
    from foveate.errors import DecodeError
    from foveate.inputs.images import load_page
    from foveate.native import bindings as B
    sys.path.insert(0, {tests!r})
    from test_lifetimes import FIX, MODEL, MMPROJ, PAGE_A, _steps

    DENSE = list(range(5, 17))   # more tokens than fixation's max_tokens (8): a dense ubatch

    def dense_run(eng, tokens, pos):
        # a dense graph of a new shape: llama.cpp rebuilds the graph and frees the previous
        # one's inputs (the aborted step's fixation input), then runs this ubatch's hooks
        b = B.llama.llama_batch_init(len(tokens), 0, 1)
        try:
            b.n_tokens = len(tokens)
            for i, t in enumerate(tokens):
                b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0] = t, pos + i, 1, 0
                b.logits[i] = i == len(tokens) - 1
            assert B.llama.llama_decode(eng._ctx, b) == 0
        finally:
            B.llama.llama_batch_free(b)

    def run(abort):
        eng = Engine(str(MODEL), str(MMPROJ), **FIX)
        n_past, _ = eng.prefill_page(load_page(PAGE_A))
        _, sels = _steps(eng, n_past, 2)                # two fixation steps
        n_past += 2
        if abort:
            stop = [True]
            cb = B.llama.ggml_abort_callback(lambda _data: stop[0])
            B.llama.llama_set_abort_callback(eng._ctx, cb, None)
            try:
                eng._decode_one(5, n_past)               # aborted inside its compute
                raise SystemExit("the abort callback did not stop the step")
            except DecodeError:
                pass
            stop[0] = False
        dense_run(eng, DENSE, n_past)                    # its after-compute hook runs next
        logits, sels2 = _steps(eng, n_past + len(DENSE), 6)
        return logits, sels + sels2

    after, fresh = run(True), run(False)
    assert np.array_equal(after[0], fresh[0]), "decoding after an aborted step reads differently"
    assert after[1] == fresh[1], "the selections after an aborted step differ"
    print("ABORT-OK")
""")


def _asan_runtime() -> list[str]:
    """gcc's AddressSanitizer runtime (and libstdc++, which it must find loaded) to preload:
    its quarantine keeps freed memory unreused and fills it, so a read through a freed
    pointer finds garbage every time. Empty when gcc has no libasan."""
    try:
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        cxx = subprocess.run(["gcc", "-print-file-name=libstdc++.so.6"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [os.path.realpath(asan), os.path.realpath(cxx)] \
        if os.path.isabs(asan) and os.path.isfile(asan) and os.path.isabs(cxx) else []


def test_an_aborted_fixation_step_leaves_nothing_dangling():
    """A compute aborted by the abort callback never reaches the after-compute hook; the
    input it set must not be read by the next ubatch once its graph is freed, and the abort
    must leave no trace: the same decoding without it reads identically. Run in a child with
    ASan's allocator preloaded (freed memory quarantined and filled with 0xa5) or, without
    libasan, glibc's free-perturbation, so a stale read of the freed input crashes."""
    env = dict(os.environ, MALLOC_PERTURB_="165", GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    pre = _asan_runtime()
    if pre:
        env.pop("MALLOC_PERTURB_")
        env["LD_PRELOAD"] = " ".join(pre + [env.get("LD_PRELOAD", "")]).strip()
        env["ASAN_OPTIONS"] = "detect_leaks=0:max_free_fill_size=1048576:free_fill_byte=165"
    script = ABORT_SCRIPT.format(tests=str(Path(__file__).parent))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0 and "ABORT-OK" in r.stdout, (
        f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def _seq_state(eng: Engine) -> bytes:
    size = llama.llama_state_seq_get_size(eng._ctx, 0)
    buf = (ctypes.c_uint8 * size)()
    assert llama.llama_state_seq_get_data(eng._ctx, buf, size, 0) == size
    return bytes(buf)


def _load_seq_state(eng: Engine, blob: bytes) -> None:
    buf = (ctypes.c_uint8 * len(blob)).from_buffer_copy(blob)
    assert llama.llama_state_seq_set_data(eng._ctx, buf, len(blob), 0) == len(blob)


def test_a_loaded_state_is_not_warm_started_from_the_page_before():
    """Page B's state loaded over page A (same cell layout) after two fixation steps: with
    refresh 4 the next step is not a refresh step, so a history kept across the load would
    reuse page A's selection. It must select as a fresh context that loaded the same state."""
    kw = dict(FIX, fixation_refresh=4)
    eng = Engine(str(MODEL), str(MMPROJ), **kw)
    n_past_b, _ = eng.prefill_page(load_page(PAGE_B))
    first_b = int(eng.logits().argmax())
    blob_b = _seq_state(eng)
    n_past_a, _ = eng.prefill_page(load_page(PAGE_A))
    assert n_past_a == n_past_b, "the two pages must take the same cells"
    _, sels_a = _steps(eng, n_past_a, 2)
    _load_seq_state(eng, blob_b)
    eng._decode_one(first_b, n_past_b)
    loaded = (eng.logits().copy(), eng.fixation_selection(0))

    fresh_eng = Engine(str(MODEL), str(MMPROJ), **kw)
    _load_seq_state(fresh_eng, blob_b)
    fresh_eng._decode_one(first_b, n_past_b)
    fresh = (fresh_eng.logits().copy(), fresh_eng.fixation_selection(0))
    assert loaded[1] != sels_a[-1] or fresh[1] == sels_a[-1]
    assert loaded[1] == fresh[1], "the loaded page kept the page before's selection"
    assert np.array_equal(loaded[0], fresh[0])
    eng.close(), fresh_eng.close()


def _prefill_copying(eng: Engine, page_path: Path) -> tuple[int, list[int]]:
    """Prefill as a stock mtmd caller does: encode each image chunk, copy
    n_embd x mtmd_input_chunk_get_n_tokens(chunk) floats out of mtmd_get_output_embd (what
    mtmd.h promises it holds), and decode the copy. Returns n_past and the rows copied."""
    page = load_page(page_path)
    copied = []
    n_embd = llama.llama_model_n_embd_inp(eng._model)
    with eng._tokenized(page, eng.format_prompt("Read the page.").encode()) as chunks:
        llama.llama_memory_clear(llama.llama_get_memory(eng._ctx), True)
        n_past, new_n_past = 0, llama.llama_pos(0)
        n = mtmd.mtmd_input_chunks_size(chunks)
        for i in range(n):
            ch = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(ch) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                assert mtmd.mtmd_encode_chunk(eng._mtmd, ch) == 0
                rows = mtmd.mtmd_input_chunk_get_n_tokens(ch)
                copied.append(rows)
                src = mtmd.mtmd_get_output_embd(eng._mtmd)
                copy = np.ctypeslib.as_array(src, shape=(rows * n_embd,)).copy()
                ptr = copy.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                rc = mtmd.mtmd_helper_decode_image_chunk(
                    eng._mtmd, eng._ctx, ch, ptr, n_past, 0, eng.n_batch,
                    ctypes.byref(new_n_past), mtmd.mtmd_helper_post_decode_callback(), None)
            else:
                rc = mtmd.mtmd_helper_eval_chunk_single(
                    eng._mtmd, eng._ctx, ch, n_past, 0, eng.n_batch, i == n - 1,
                    ctypes.byref(new_n_past))
            assert rc == 0
            n_past = new_n_past.value
    return n_past, copied


def test_a_merged_chunk_reports_its_kept_rows_to_a_caller_that_copies_them():
    """With merging on, mtmd_input_chunk_get_n_tokens of an encoded image chunk is the kept
    count (so copying that many rows never reads past the buffer), the decode helper knows
    the copy holds merged rows, and the page reads exactly as through foveate's own path."""
    eng = Engine(str(MODEL), str(MMPROJ), n_ctx=2048, threads=2, merge=0.5)
    n_past, stats = eng.prefill_page(load_page(PAGE_B), "Read the page.")
    ref, _ = _steps(eng, n_past, 6)
    n_past_c, copied = _prefill_copying(eng, PAGE_B)
    assert copied == [stats.image_tokens_merged] and stats.image_tokens_merged < stats.image_tokens
    assert n_past_c == n_past                    # merged rows keep their positions
    got, _ = _steps(eng, n_past_c, 6)
    assert np.array_equal(got, ref)
    # before encoding, a chunk reports all its tokens (what a caller plans the cache with)
    with eng._tokenized(load_page(PAGE_B), eng.format_prompt("x").encode()) as chunks:
        n_img = [mtmd.mtmd_input_chunk_get_n_tokens(mtmd.mtmd_input_chunks_get(chunks, i))
                 for i in range(mtmd.mtmd_input_chunks_size(chunks))
                 if mtmd.mtmd_input_chunk_get_type(mtmd.mtmd_input_chunks_get(chunks, i))
                 == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE]
    assert n_img == [stats.image_tokens]
    eng.close()
