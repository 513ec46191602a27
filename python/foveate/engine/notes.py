"""One-line notes on a page's result, for stderr and Result.warnings.

`page_warnings`: the bundled readers are instruments: they read foveate's generated pages
and nothing else. On anything else (a screenshot, a photo, a scan, even a generated page
rescaled) they print whitespace or noise; a user who tries one on their own page must hear
why, not get an empty answer with exit code 0.
`cutoff_warnings`: the text stopped because the KV cache filled or max_tokens ran out, not
because the model ended it (a 3000 x 4000 scan can take 4,000 image tokens and leave 30).
"""
from __future__ import annotations

INSTRUMENT_PREFIX = "foveate-reader"   # general.name of every bundled reader
CELL = 28                              # px per character cell (pages.CELL)
PAGE_WIDTH = 24 * CELL                 # both layouts: 24 cells per line
MAX_PAGE_HEIGHT = 26 * CELL            # the document layout's page
GRID_MAX_HEIGHT = 17 * CELL            # the grid's: at most 16 lines + a margin row
MIN_CHARS = 3                          # fewer non-blank characters read: "read nothing"
SEE = "the bundled foveate-reader models read only foveate's generated pages; see README " \
      "'Supported models'"


def is_instrument(model_name: str) -> bool:
    return model_name.startswith(INSTRUMENT_PREFIX)


def page_warnings(model_name: str, width: int, height: int, text: str) -> list[str]:
    """One-line notes for a page an instrument model cannot read (empty for other models)."""
    if not is_instrument(model_name):
        return []
    if width != PAGE_WIDTH or height % CELL or height > MAX_PAGE_HEIGHT:
        return [f"this image ({width}x{height}) is unlike {model_name}'s training pages "
                f"({PAGE_WIDTH} px wide, {CELL} px character cells): its output is likely "
                f"noise; {SEE}"]
    # each reader knows one style: the grid reader's pages are at most 17 cells high, the
    # layout reader's are the document page (26 cells)
    if "layout" in model_name and height != MAX_PAGE_HEIGHT:
        return [f"this image ({width}x{height}) is not a document-layout page "
                f"({PAGE_WIDTH}x{MAX_PAGE_HEIGHT}), the only style {model_name} reads: the grid "
                f"pages are the grid reader's (foveate-reader-q8_0.gguf); {SEE}"]
    if "layout" not in model_name and height > GRID_MAX_HEIGHT:
        return [f"this image ({width}x{height}) looks like a document-layout page, which "
                f"{model_name} was not trained on (its pages are at most {GRID_MAX_HEIGHT} px "
                f"high): read it with foveate-reader-layout-q8_0.gguf; {SEE}"]
    if sum(not c.isspace() for c in text) < MIN_CHARS:
        return [f"{model_name} read almost nothing on this image: {SEE}"]
    return []


def cutoff_warnings(stats, max_tokens: int, n_ctx: int) -> list[str]:
    """A note when the page's text was cut off, with the flags that fix it."""
    if stats.stop_reason == "n_ctx":
        return [f"output cut off: the context (n_ctx={n_ctx}) filled after "
                f"{stats.tokens_generated} tokens; the page took {stats.image_tokens} image "
                f"tokens: raise -c, or lower --image-max-tokens"]
    if stats.stop_reason == "max_tokens":
        return [f"output cut off at the {max_tokens}-token limit: raise -n"]
    return []
