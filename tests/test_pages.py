"""The page generator's layouts: the grid layout is unchanged, and on document pages every
inked cell is a ground-truth character at its placement (margins, line spacing, blank bottom)."""
import numpy as np
import pytest

from foveate.instruments.pages import CELL, LAYOUTS, PageSpec, make_page


def inked_cells(img, edge=4):
    """Cells with ink in their central 20x20 px: 30-px glyphs bleed a few pixels into the
    neighbouring cells' edges, never into their centres."""
    a = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = a.shape[0] // CELL, a.shape[1] // CELL
    dark = (a < 128).reshape(h, CELL, w, CELL)[:, edge:-edge, :, edge:-edge].any(axis=(1, 3))
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(dark))}


def char_cells(page):
    at = page.at
    return {(at.top + i * (1 + at.spacing), at.left + j)
            for i, line in enumerate(page.text.split("\n")) for j, ch in enumerate(line) if ch != " "}


@pytest.mark.parametrize("index", range(6))
def test_document_page_ink_is_the_ground_truth_at_its_placement(index):
    spec = LAYOUTS["document"]
    page = make_page("heldout", index, spec)
    assert page.image.size == (spec.cols * CELL, spec.page_rows * CELL)
    lines = page.text.split("\n")
    assert spec.min_rows <= len(lines) <= spec.rows
    assert max(map(len, lines)) <= spec.text_cols
    assert inked_cells(page.image) == char_cells(page)
    last_row = page.at.top + (len(lines) - 1) * (1 + page.at.spacing)
    assert last_row < spec.page_rows - 1          # a blank row below the text


def test_document_layouts_vary_and_grid_pages_sit_at_the_origin():
    spec = LAYOUTS["document"]
    ats = {make_page("train", i, spec).at for i in range(40)}
    assert {a.spacing for a in ats} == {0, 1}
    assert len({a.left for a in ats}) > 1 and len({a.top for a in ats}) > 1
    grid = make_page("heldout", 3)
    assert grid.at.left == grid.at.top == grid.at.spacing == 0
    assert inked_cells(grid.image) == char_cells(grid)


def test_layout_that_cannot_fit_is_refused():
    with pytest.raises(ValueError, match="no blank row"):
        PageSpec(rows=12, page_rows=20, spacings=(0, 1))
    with pytest.raises(ValueError, match="no blank row"):      # grid height: rows + margin
        PageSpec(max_top=3, spacings=(0, 1))
    with pytest.raises(ValueError, match="max_left"):
        PageSpec(cols=24, text_cols=22, max_left=4)
    with pytest.raises(ValueError, match="max_left"):          # full-width lines cannot shift
        PageSpec(max_left=4)
    with pytest.raises(ValueError, match="min_rows"):
        PageSpec(rows=6, min_rows=8)
    with pytest.raises(ValueError, match="spacings"):
        PageSpec(spacings=())
