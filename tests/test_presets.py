"""engine/presets.py: the published OCR prompts, one table of Preset rows."""
import re
from collections import Counter

import pytest

from foveate.engine import presets as P

# image placeholders the projects' own prompts or chat templates use; foveate inserts the
# image marker itself, so no preset may carry one
IMAGE_MARKERS = ("<image>", "<|image|>", "<|image_pad|>", "<|vision_start|>", "<|vision_end|>",
                 "<|img|>", "<|imgpad|>", "<|endofimg|>", "<img>\n", "[IMG]", "<|begin_of_image|>",
                 "<|end_of_image|>", "<image_placeholder>")


def test_names_unique():
    counts = Counter(p.name for p in P.PRESETS)
    assert [n for n, c in counts.items() if c > 1] == []


def test_names_are_cli_friendly():
    for p in P.PRESETS:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", p.name), p.name


def test_families_known():
    assert len(set(P.FAMILIES)) == len(P.FAMILIES)
    for p in P.PRESETS:
        assert p.family in P.FAMILIES, (p.name, p.family)


def test_one_default_per_family_with_presets():
    for fam in P.FAMILIES:
        rows = P.presets_for(fam)
        defaults = [p.name for p in rows if p.default]
        if rows:
            assert len(defaults) == 1, (fam, defaults)
            assert P.default_preset(fam).name == defaults[0]
        else:
            assert P.default_preset(fam) is None


def test_family_without_published_prompt_has_none():
    # GLM-4.1V's project publishes no OCR prompt: no preset, and auto keeps foveate's
    assert P.presets_for("glm4v") == []
    assert P.default_preset("glm4v") is None
    assert P.presets_for("no-such-family") == []


def test_every_preset_names_its_source():
    for p in P.PRESETS:
        assert p.source.strip(), p.name
        assert ("https://" in p.source or "github.com" in p.source
                or "huggingface.co" in p.source), (p.name, p.source)


def test_unknown_name_raises_listing_known():
    with pytest.raises(ValueError) as err:
        P.preset("no-such-preset")
    msg = str(err.value)
    assert "no-such-preset" in msg
    for p in P.PRESETS:
        assert p.name in msg


def test_lookup_by_name():
    for p in P.PRESETS:
        assert P.preset(p.name) is p


def test_no_image_placeholder_in_prompts():
    for p in P.PRESETS:
        for marker in IMAGE_MARKERS:
            assert marker not in p.prompt, (p.name, marker)


def test_stripped_placeholder_is_noted():
    # DeepSeek-OCR publishes its prompts as "<image>\n..."; the stripped marker is told
    for fam in ("deepseekocr", "deepseekocr2"):
        for p in P.presets_for(fam):
            assert "stripped" in p.notes, p.name


def test_field_types():
    for p in P.PRESETS:
        assert isinstance(p.prompt, str)
        assert p.max_tokens is None or (isinstance(p.max_tokens, int) and p.max_tokens > 0)
        assert p.temperature is None or 0.0 <= p.temperature <= 2.0
        assert p.repetition_penalty is None or p.repetition_penalty > 0
        assert p.system is None or isinstance(p.system, str)
        assert "\n" not in p.notes, p.name


def test_presets_for_keeps_table_order():
    for fam in P.FAMILIES:
        assert P.presets_for(fam) == [p for p in P.PRESETS if p.family == fam]


def test_some_published_prompts_verbatim():
    # spot checks against the projects' own text (whitespace included)
    assert P.preset("deepseek-ocr-markdown").prompt == "<|grounding|>Convert the document to markdown."
    assert P.preset("mineru25-text").prompt == "\nText Recognition:"
    assert P.preset("glmocr-text").prompt == "Text Recognition:"
    assert P.preset("paddleocr-vl-ocr").prompt == "OCR:"
    assert P.preset("dotsocr-ocr").prompt == "Extract the text content from this image."
    assert P.preset("dotsocr-layout").prompt.endswith("must be a single JSON object.\n")
    assert P.preset("lightonocr-plain").prompt == ""  # the image alone
