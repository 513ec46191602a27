"""The bundled reading model (models/reader): it loads in our build in every exported type
and transcribes held-out generated pages within the quality bar (CER through llama.cpp)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from foveate.surface.api import Reader
from foveate.instruments.evaluate import evaluate, page_pairs
from foveate.instruments.pages import LAYOUTS, make_page

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "reader"
SAMPLES = ROOT / "tests" / "data" / "pages"
DOC_SAMPLES = ROOT / "tests" / "data" / "pages-document"   # the layout reader's format


def _reader(kind: str) -> Reader:
    return Reader(str(MODEL / f"foveate-reader-{kind}.gguf"),
                  mmproj=str(MODEL / "foveate-reader-mmproj-f16.gguf"), n_ctx=2048)


@pytest.fixture(scope="module")
def samples():
    pairs = page_pairs([SAMPLES])
    assert len(pairs) >= 4
    return pairs


@pytest.mark.parametrize("kind,bound", [("q8_0", 0.05), ("q4_k_m", 0.08)])
def test_reader_cer_on_heldout_samples(samples, kind, bound):
    res = evaluate(_reader(kind), samples, max_tokens=600)
    assert res.image_tokens >= 256 * len(samples)     # a real test for 5% fixation
    assert res.chars >= 200 * len(samples)
    assert res.cer <= bound, f"{kind}: CER {res.cer:.4f} > {bound} (per page {res.cers})"


@pytest.mark.parametrize("kind,bound", [("q8_0", 0.03), ("q4_k_m", 0.03)])
def test_reader_recognizes_the_page_lines(samples, kind, bound):
    """Recognition alone: CER of the first N output lines, N = the page's line count
    (models/reader/README.md has the numbers on 25 held-out pages)."""
    from rapidfuzz.distance import Levenshtein

    reader, edits, chars = _reader(kind), 0, 0
    for img, truth in samples:
        out = reader.read(img, max_tokens=600).text.strip()
        first = "\n".join(out.split("\n")[:len(truth.split("\n"))])
        edits += Levenshtein.distance(first, truth)
        chars += len(truth)
    assert edits / chars <= bound, f"{kind}: first-lines CER {edits / chars:.4f} > {bound}"


def test_reader_f16_loads_and_reads(samples):
    """The F16 export within the Q8_0 bar (README: CER 0.033 on 25 held-out pages; 0.0 on
    these 5)."""
    res = evaluate(_reader("f16"), samples, max_tokens=600)
    assert res.image_tokens == 408 * len(samples)   # 24 x 17 cells: 16 lines + margin
    assert res.cer <= 0.05, f"F16: CER {res.cer:.4f} > 0.05 (per page {res.cers})"


def test_layout_reader_cer_on_document_pages():
    """The layout reader (models/reader/README.md) on its own page format: margins, line
    spacing, a blank lower page (624 tokens, about 15% of them characters)."""
    pairs = page_pairs([DOC_SAMPLES])
    reader = Reader(str(MODEL / "foveate-reader-layout-q8_0.gguf"),
                    mmproj=str(MODEL / "foveate-reader-mmproj-f16.gguf"), n_ctx=2048)
    res = evaluate(reader, pairs, max_tokens=600)
    assert len(pairs) == 5 and res.image_tokens == 624 * len(pairs)
    assert res.cer <= 0.05, f"CER {res.cer:.4f} > 0.05 (per page {res.cers})"


@pytest.mark.parametrize("folder,layout", [(SAMPLES, "grid"), (DOC_SAMPLES, "document")])
def test_samples_are_the_generator_output(folder, layout):
    """The committed pages are what `foveate pages --split heldout --layout L` writes (text
    exactly; pixels up to font-rasterizer differences between Pillow versions)."""
    from PIL import Image

    for img, truth in page_pairs([folder]):
        split, idx = img.stem.split("-")
        page = make_page(split, int(idx), LAYOUTS[layout])
        assert page.text == truth
        a = np.asarray(Image.open(img).convert("RGB"), dtype=np.float32)
        b = np.asarray(page.image, dtype=np.float32)
        assert a.shape == b.shape
        assert np.abs(a - b).mean() < 2.0


def test_page_generator_is_deterministic_and_splits_are_disjoint():
    a, b = make_page("heldout", 11), make_page("heldout", 11)
    assert a.text == b.text and a.image.tobytes() == b.image.tobytes()
    train = {make_page("train", i).text for i in range(20)}
    held = {make_page("heldout", i).text for i in range(20)}
    assert not train & held
    with pytest.raises(ValueError, match="unknown split"):
        make_page("test", 0)


def test_1d_twin_reads_and_merges_at_original_positions(samples):
    """The 1-D RoPE twin (text arch qwen2, image token i at P + i; same projector): a trained
    model through the 1-D image path, dense and merged at original (gapped) positions."""
    mm = str(MODEL / "foveate-reader-mmproj-f16.gguf")
    dense = evaluate(Reader(str(MODEL / "foveate-reader-1d-q8_0.gguf"), mmproj=mm, n_ctx=2048),
                     samples, max_tokens=600)
    assert dense.cer <= 0.06, f"CER {dense.cer:.4f} (per page {dense.cers})"
    merged = evaluate(Reader(str(MODEL / "foveate-reader-1d-q8_0.gguf"), mmproj=mm, n_ctx=2048,
                             merge=0.95, merge_score="norm"), samples, max_tokens=600)
    assert merged.image_tokens_merged < merged.image_tokens == dense.image_tokens
    # reads on through the gaps: 0.18 on 25 pages (docs/benchmarks.md), 0.21 on these 5
    assert merged.cer < 0.3, f"CER {merged.cer:.4f} (per page {merged.cers})"
