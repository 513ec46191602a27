"""GLM-4.1V-9B-shaped random GGUFs (instruments/shapes/glm4v.py, shape glm-4.1v-9b): a cut
pair (1 layer at full width, 512-token vocab; ~900 MB, most of the time is writing it) that
llama.cpp / mtmd load and read a page with: the glm4v code paths GLM-OCR does not take
(learned position table, post-conv RMSNorm, q/k/v biases, rotary over half the head)."""
from __future__ import annotations

import pytest

from foveate.instruments.shapes import glm4v as G

SHAPE = "glm-4.1v-9b"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    model, mmproj = G.write_pair(tmp_path_factory.mktemp("glm41v"), SHAPE, layers=1, vocab=512)
    yield model, mmproj
    model.unlink()
    mmproj.unlink()


def test_files_read_back(pair):
    import gguf

    model, mmproj = pair
    r = gguf.GGUFReader(model)
    kv = lambda k: r.fields[k].contents()
    assert kv("glm4.block_count") == 1 and "glm4.nextn_predict_layers" not in r.fields
    assert kv("glm4.rope.dimension_count") == 64                        # half of 128
    assert kv("glm4.rope.dimension_sections") == [8, 12, 12, 0]
    assert "glm4.attention.key_length" not in r.fields
    assert {t.name for t in r.tensors} == {n for n, *_ in G.text_tensors(SHAPE, 1, 512)}
    r = gguf.GGUFReader(mmproj)
    assert kv("clip.vision.feed_forward_length") == 13696               # the converter's quirk
    got = {t.name: tuple(int(x) for x in t.shape[::-1]) for t in r.tensors}
    assert got == {n: s for n, s, *_ in G.mmproj_tensors(SHAPE, 1)}
    sizes = G.sizes(SHAPE, 1, 512)
    assert model.stat().st_size == sizes["text"]["bytes"]
    assert mmproj.stat().st_size == sizes["mmproj"]["bytes"]


def test_pair_reads_a_page(pair, page):
    from foveate import Reader

    model, mmproj = pair
    with Reader(model, mmproj, n_ctx=4096, threads=1) as r:
        assert r.engine.format_prompt("OCR:") == (
            "[gMASK]<sop><|user|>\n<__media__>\nOCR:<|assistant|>\n")
        st = r.read(page, prompt="OCR:", max_tokens=2).stats
    # 448 x 224 px: 16 x 8 tokens of 28 x 28 px (see test_shape_glm4v.py)
    assert st.image_tokens == 16 * 8 and st.prompt_tokens == 128 + 13
    assert st.stop_reason in ("max_tokens", "eos")
