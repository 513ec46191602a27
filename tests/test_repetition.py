"""The repetition guard: stops a looping output (cutting the repeats), leaves real text alone,
and works end to end on a model built to loop."""
from __future__ import annotations

import numpy as np
import pytest

from foveate.engine.repetition import GuardedOutput, RepetitionGuard

REPO_TEXT = __import__("pathlib").Path(__file__).resolve().parents[1] / "models/reader/sample-page.txt"


def _feed(tokens, guard=RepetitionGuard()):
    out = GuardedOutput(guard)
    for i, t in enumerate(tokens):
        if out.add(t, bytes([t])):
            return i + 1, bytes(out.out)
    return None, bytes(out.out)


def test_a_looping_line_is_stopped_and_its_repeats_cut():
    line = list(b"The quick brown fox jumps over the lazy dog, 1234.\n")   # 51 tokens
    stopped, text = _feed(line * 20)
    g = RepetitionGuard()
    # stops once the loop covers min_span tokens and min_repeats lines, not at the limit
    assert stopped == max(g.min_span, g.min_repeats * len(line))
    assert text == bytes(line)          # one copy left


def test_a_repeated_token_is_stopped():
    stopped, text = _feed([7] * 1000)
    assert stopped == RepetitionGuard().min_span and text == bytes([7])


def test_real_text_and_tables_pass():
    page = REPO_TEXT.read_bytes()
    assert _feed(list(page) * 1)[0] is None
    table = b"| a | b | c |\n|---|---|---|\n" + b"".join(b"| %d | x%d | %d |\n" % (i, i * 7, i * i)
                                                    for i in range(40))
    assert _feed(list(table))[0] is None
    rule = b"-" * 120 + b"\n" + b"Contents " + b"." * 100 + b" 7\n"
    assert _feed(list(rule))[0] is None


def test_guard_off_and_bad_settings():
    assert _feed([7] * 1000, guard=None) == (None, bytes([7]) * 1000)
    with pytest.raises(ValueError, match="repetition guard"):
        RepetitionGuard(min_span=1)


@pytest.fixture(scope="module")
def looping_pair(tmp_path_factory):
    """A tiny Qwen2.5-VL pair whose text model can only say "abcabc...": attention and FFN
    outputs are zero, so the last hidden state is the last token's embedding; "a", "b", "c"
    have embeddings along three axes and every other token along the third, and the output
    layer maps axis 1 -> "b", 2 -> "c", 3 -> "a"."""
    from foveate.instruments.shapes.tiny_model import (TinyShape, char_vocab, write_projector,
                                                write_text_model)

    s = TinyShape()
    tokens, _ = char_vocab()
    a, b, c = (tokens.index(ch) for ch in "abc")
    n, d = len(tokens), s.n_embd
    emb = np.zeros((n, d), np.float32)
    emb[:, 2] = 1.0
    emb[a, :], emb[b, :], emb[c, :] = 0, 0, 0
    emb[a, 0], emb[b, 1], emb[c, 2] = 1.0, 1.0, 1.0
    out = np.zeros((n, d), np.float32)
    out[b, 0], out[c, 1], out[a, 2] = 10.0, 10.0, 10.0
    w = {"token_embd.weight": emb, "output.weight": out}
    for i in range(s.n_layer):
        w[f"blk.{i}.attn_output.weight"] = np.zeros((d, d), np.float32)
        w[f"blk.{i}.ffn_down.weight"] = np.zeros((d, s.n_ff), np.float32)
    d_ = tmp_path_factory.mktemp("loop")
    return (write_text_model(d_ / "loop-f16.gguf", s, weights=w),
            write_projector(d_ / "loop-mmproj-f16.gguf", s))


def test_a_model_forced_to_loop_stops_early(looping_pair, page):
    from foveate import Reader

    model, mmproj = looping_pair
    with Reader(model, mmproj, n_ctx=2048, threads=2) as r:
        off = r.read(page, max_tokens=400, repetition_guard=False)
        assert off.stats.stop_reason == "max_tokens" and off.stats.tokens_generated == 400
        assert off.text.startswith("abcabcabc") and len(off.text) == 400
        on = r.read(page, max_tokens=400)       # on by default
        assert on.stats.stop_reason == "repetition"
        assert on.stats.tokens_generated == RepetitionGuard().min_span
        assert on.text == "abc"
        many = list(r.read_many([page, page], max_tokens=400))
        assert [m.stats.stop_reason for m in many] == ["repetition"] * 2
        assert [m.text for m in many] == ["abc"] * 2
