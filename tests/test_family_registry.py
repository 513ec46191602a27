"""engine/families.py: which family a GGUF pair's metadata names, and the refusals."""
from __future__ import annotations

import pytest

from foveate.engine.families import BY_KEY, FAMILIES, check_method, identify


def _meta(arch, name="", mrope=False):
    m = {"general.architecture": arch, "general.name": name}
    if mrope:
        m[f"{arch}.rope.dimension_sections"] = 4
    return m


@pytest.mark.parametrize("arch,projector,want", [
    ("qwen2vl", "qwen2vl_merger", "qwen2vl"),
    ("qwen2vl", "qwen2.5vl_merger", "qwen25vl"),
    ("qwen3vl", "qwen3vl_merger", "qwen3vl"),
    ("deepseek2-ocr", "deepseekocr", "deepseekocr"),
    ("deepseek2-ocr", "deepseekocr2", "deepseekocr2"),
    ("paddleocr", "paddleocr", "paddleocr"),
    ("qwen3", "lightonocr", "lightonocr"),
    ("qwen2", "dots_ocr", "dotsocr"),
    ("hunyuan_vl", "hunyuanvl", "hunyuanvl"),
    ("llama", "idefics3", "idefics3"),
    ("lfm2", "lfm2", "lfm2vl"),
    ("qwen35", "qwen3vl_merger", "qwen35"),
    ("qwen35moe", "qwen3vl_merger", "qwen35"),
    ("qwen2", "internvl", "internvl"),
    ("granite", "granite4_vision", "granite4vision"),
    ("qwen35", "minicpmv4_6", "minicpmv46"),
])
def test_the_projector_names_the_family(arch, projector, want):
    assert identify(_meta(arch), projector).family.key == want


def test_glm_ocr_and_glm_4_1v_share_a_projector():
    """Both convert with M-RoPE sections; GLM-OCR has a NextN layer (or says so by name)."""
    assert identify(_meta("glm4", "GLM 4.1V 9B Thinking", mrope=True), "glm4v").family.key == "glm4v"
    nextn = {**_meta("glm4", "", mrope=True), "glm4.nextn_predict_layers": 1}
    assert identify(nextn, "glm4v").family.key == "glmocr"
    assert identify(_meta("glm4", "GLM-OCR", mrope=True), "glm4v").family.key == "glmocr"
    assert identify({**_meta("glm4moe"), "glm4moe.nextn_predict_layers": 1},
                    "glm4v").family.key == "glm4v"   # GLM-4.5V


@pytest.mark.parametrize("name,tune", [("olmOCR-7B-0825", "olmocr"),
                                       ("Nanonets-OCR-s", "nanonets-ocr"),
                                       ("MinerU2.5-2509-1.2B", "mineru25"),
                                       ("Qwen2.5-VL-7B-Instruct", "")])
def test_fine_tunes_are_told_by_name(name, tune):
    got = identify(_meta("qwen2vl", name), "qwen2.5vl_merger")
    assert got.family.key == "qwen25vl" and got.fine_tune == tune
    assert got.preset_family == (tune or "qwen25vl")


@pytest.mark.parametrize("name,tune", [("granite-docling-258M", "docling"),
                                       ("SmolDocling-256M-preview", "docling"),
                                       ("SmolVLM-256M-Instruct", "")])
def test_docling_models_are_told_from_smolvlm_by_name(name, tune):
    got = identify(_meta("llama", name), "idefics3")
    assert got.family.key == "idefics3" and got.fine_tune == tune
    # the name alone makes no fine-tune of another family
    assert identify(_meta("qwen2vl", name), "qwen2.5vl_merger").fine_tune == ""


def test_an_unknown_projector_is_named():
    got = identify(_meta("gemma3"), "gemma3")
    assert got.family is None and "gemma3" in got.label
    check_method(got, True, True)   # unknown: stock path, no refusal


def test_every_family_has_a_shape_and_a_unique_key():
    assert len({f.key for f in FAMILIES}) == len(FAMILIES)
    assert all(f.shapes for f in FAMILIES)


def test_a_refused_method_raises_with_the_reason(monkeypatch):
    from dataclasses import replace

    import foveate.engine.families as F
    fam = replace(BY_KEY["paddleocr"], merging="the reason")
    ident = F.Identified(fam, projector="paddleocr", text_arch="paddleocr")
    check_method(ident, True, False)
    with pytest.raises(ValueError, match="token merging is not supported for PaddleOCR-VL "
                                         "models yet: the reason"):
        check_method(ident, False, True)


def test_auto_preset_is_the_familys_except_for_foveates_own_readers():
    from foveate.engine.families import Identified, pick_preset

    ident = Identified(BY_KEY["hunyuanvl"], projector="hunyuanvl", text_arch="hunyuan_vl")
    assert pick_preset(ident, "foveate-hunyuan-ocr-shape (random weights)").name == "hunyuan-ocr-parse"
    assert pick_preset(ident, "HunyuanOCR").name == "hunyuan-ocr-parse"
    qwen = Identified(BY_KEY["qwen25vl"], projector="qwen2.5vl_merger", text_arch="qwen2vl")
    assert pick_preset(qwen, "foveate-reader-layout") is None
    assert pick_preset(qwen, "foveate-tiny-qwen2.5vl (random weights)") is None
    assert pick_preset(qwen, "foveate-reader", "none") is None
