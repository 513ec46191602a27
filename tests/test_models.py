"""Model generators: deterministic tiny models, and real-shape models llama.cpp loads."""
import hashlib


def _digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tiny_generator_is_deterministic(tmp_path):
    from foveate.instruments.shapes.tiny_model import write_tiny_pair

    a = write_tiny_pair(tmp_path / "a", seed=3)
    b = write_tiny_pair(tmp_path / "b", seed=3)
    c = write_tiny_pair(tmp_path / "c", seed=4)
    assert [_digest(p) for p in a] == [_digest(p) for p in b]
    assert _digest(a[0]) != _digest(c[0])


def test_qwen25vl_3b_shape_loads_and_runs(tmp_path, page):
    """Qwen2.5-VL-3B's real widths, vocab and vision tower, cut to 1 layer each for CI."""
    from foveate.native import bindings as B
    from foveate.engine.core import Engine
    from foveate.instruments.shapes.tiny_model import make_shape, write_tiny_pair

    model, mmproj = write_tiny_pair(tmp_path, make_shape("qwen2.5-vl-3b", layers=1),
                                    name="qwen2.5-vl-3b")
    eng = Engine(model, mmproj, n_ctx=512, threads=2)
    try:
        assert B.llama.llama_model_n_embd(eng._model) == 2048
        assert B.llama.llama_vocab_n_tokens(eng._vocab) == 151936
        assert B.llama.llama_model_n_head(eng._model) == 16
        assert B.llama.llama_model_n_head_kv(eng._model) == 2
        res = eng.read(page, max_tokens=2)
        assert res.stats.image_tokens == 128
    finally:
        eng.close()
