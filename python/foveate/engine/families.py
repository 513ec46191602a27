"""Which OCR model family a GGUF pair is, and what foveate supports for it.

A family is identified from the two files' metadata, as llama.cpp's converter writes them:
the projector type of the mmproj (`clip.projector_type`) names the family; the text model's
architecture and name tell the variants that share a projector (GLM-OCR vs GLM-4.1V,
Qwen2-VL / 2.5-VL fine-tunes such as olmOCR, Nanonets-OCR, MinerU2.5).

`SUPPORT` says, per family, whether fixation and merging are tested end to end
(tests/test_families.py runs each family's generated pair through them) or refused, and
why. The engine refuses a method the table refuses, with that reason, instead of running it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True)
class Family:
    key: str                 # presets.FAMILIES key
    name: str                # what users call it
    projector: str           # clip.projector_type
    text_archs: tuple        # general.architecture of the text models it pairs with
    rope: str                # the LLM's RoPE, as mtmd positions image rows
    shapes: tuple = ()       # `foveate make-model --shape` names that write this family
    fixation: str = ""       # "" = supported (tested), else why foveate refuses it
    merging: str = ""        # the same for token merging
    notes: str = ""
    tiles: bool = False      # a page may become several image chunks (tiles + global view)
    # `--merge auto` keeps at least this share: RTPrune's formula alone (0) only where it was
    # validated (DeepSeek-OCR, ~84% kept); elsewhere it kept 54% / 37% of the bundled readers'
    # tokens at CER 0.55 / 0.35, so auto never goes below RTPrune's validated 0.84 there
    merge_auto_floor: float = 0.84
    markers: tuple = field(default_factory=tuple)  # learned rows inside the image chunk
    # end-of-turn tokens the converter does not mark as end of generation
    stop_tokens: tuple = ()
    # llama.cpp's template heuristic picks a wrong format: render the GGUF's jinja instead
    jinja: bool = False
    # the template opens a reasoning block unless enable_thinking is false (Qwen3.5): rendered
    # with it false, so a page is answered with its text, not a reasoning trace first
    thinking_off: bool = False


FAMILIES: tuple[Family, ...] = (
    Family("qwen2vl", "Qwen2-VL", "qwen2vl_merger", ("qwen2vl",), "M-RoPE",
           shapes=("qwen2-vl-2b", "qwen2-vl-7b"),
           notes="olmOCR v0.1 and MinerU2.5 are fine-tunes (of its architecture)"),
    Family("qwen25vl", "Qwen2.5-VL", "qwen2.5vl_merger", ("qwen2vl",), "M-RoPE",
           shapes=("tiny", "qwen2.5-vl-3b", "qwen2.5-vl-7b"),
           notes="the bundled readers; olmOCR 0725+ and Nanonets-OCR are fine-tunes"),
    Family("qwen3vl", "Qwen3-VL", "qwen3vl_merger", ("qwen3vl", "qwen3vlmoe"),
           "interleaved M-RoPE", shapes=("qwen3-vl-2b", "qwen3-vl-4b"),
           markers=("deepstack features (extra row width, not rows)",)),
    Family("deepseekocr", "DeepSeek-OCR", "deepseekocr", ("deepseek2-ocr",), "1-D",
           shapes=("deepseek-ocr",), tiles=True, merge_auto_floor=0.0,
           markers=("image newline", "view separator")),
    Family("deepseekocr2", "DeepSeek-OCR-2", "deepseekocr2", ("deepseek2-ocr",), "1-D",
           shapes=("deepseek-ocr-2",), tiles=True, markers=("view separator",)),
    Family("paddleocr", "PaddleOCR-VL", "paddleocr", ("paddleocr",), "M-RoPE",
           shapes=("paddleocr-vl",)),
    Family("lightonocr", "LightOnOCR", "lightonocr", ("qwen3",), "1-D",
           shapes=("lightonocr-1b",)),
    # dots.ocr ends its turn with <|endofassistant|> (generation_config eos ids), but the
    # converter takes EOS from tokenizer_config (<|endoftext|>) only
    Family("dotsocr", "dots.ocr", "dots_ocr", ("qwen2",), "1-D",
           shapes=("dots-ocr",), stop_tokens=("<|endofassistant|>",),
           jinja=True),   # llama.cpp takes its template for GLM-Edge's (no <|endofuser|>)
    Family("glm4v", "GLM-4.1V", "glm4v", ("glm4", "glm4moe"), "M-RoPE",
           shapes=("glm-4.1v-9b",)),
    # GLM-OCR's class says use_mrope=False, but its config's mrope_section turns it back on
    # (conversion/glm.py: Glm4Model.__init__), so converted files carry M-RoPE sections
    Family("glmocr", "GLM-OCR", "glm4v", ("glm4",), "M-RoPE", shapes=("glm-ocr",)),
    Family("hunyuanvl", "HunyuanOCR", "hunyuanvl", ("hunyuan_vl",), "XD-RoPE",
           shapes=("hunyuan-ocr",), markers=("image begin", "image end", "row newline")),
    # --- document models people run on CPUs (issue 36) ---
    # SmolVLM's architecture: a page is up to 4 x 4 tiles of 512 px plus a global view, each
    # its own image chunk with text markers between them (<fake_token_around_image>
    # <row_r_col_c>, <global-img>); granite-docling / SmolDocling answer in DocTags.
    # jinja: llama.cpp's built-in SmolVLM format adds spaces and newlines the template has not
    Family("idefics3", "Idefics3 / SmolVLM", "idefics3", ("llama",), "1-D",
           shapes=("granite-docling-258m", "smoldocling-256m"), tiles=True, jinja=True,
           notes="granite-docling-258M and SmolDocling-256M are fine-tunes answering in DocTags"),
    # hybrid text models: fixation acts on the attention layers' KV cache only (the focal
    # layer is an attention layer; recurrent layers keep their stock computation)
    Family("lfm2vl", "LFM2-VL", "lfm2", ("lfm2",), "1-D",
           shapes=("lfm2-vl-450m", "lfm2-vl-1.6b"), tiles=True,
           notes="hybrid: short convolutions + attention layers"),
    Family("qwen35", "Qwen3.5", "qwen3vl_merger", ("qwen35", "qwen35moe"),
           "interleaved M-RoPE", shapes=("qwen3.5-0.8b", "qwen3.5-2b"), jinja=True,
           thinking_off=True,
           notes="hybrid: Gated DeltaNet + attention layers; Qwen3-VL's projector"),
    # a page is up to 12 tiles of 448 px plus a thumbnail, each its own chunk in <img>...</img>
    Family("internvl", "InternVL", "internvl", ("qwen2", "qwen3"), "1-D",
           shapes=("internvl3-1b",), tiles=True),
    # one anyres chunk: the overview, then the unpadded tile grid with a learned newline row
    # after each grid row (v.image_newline, repeated across the deepstack streams' width)
    Family("granite4vision", "Granite Vision 4", "granite4_vision", ("granite",), "1-D",
           shapes=("granite-vision-4.1-4b",),
           markers=("image newline", "deepstack features (extra row width, not rows)")),
    # an overview plus slices, each its own chunk with <image> / <slice> text between them
    Family("minicpmv46", "MiniCPM-V 4.6", "minicpmv4_6", ("qwen35",), "interleaved M-RoPE",
           shapes=("minicpm-v-4.6",), tiles=True, jinja=True, thinking_off=True,
           notes="hybrid: Qwen3.5's text model (Gated DeltaNet + attention layers)"),
)

BY_KEY = {f.key: f for f in FAMILIES}

class FineTune(NamedTuple):
    needle: str              # what the model's name contains
    label: str               # what users call it
    bases: tuple             # the families (keys) whose models it is looked for in


# fine-tunes that keep their base's projector and text arch: told apart by the model's name
_QWEN2 = ("qwen2vl", "qwen25vl")
FINE_TUNES = {"olmocr": FineTune("olmocr", "olmOCR", _QWEN2),
              "nanonets-ocr": FineTune("nanonets", "Nanonets-OCR", _QWEN2),
              "mineru25": FineTune("mineru", "MinerU2.5", _QWEN2),
              "docling": FineTune("docling", "granite-docling / SmolDocling", ("idefics3",))}


@dataclass(frozen=True)
class Identified:
    family: Family | None    # None: a projector foveate does not know
    fine_tune: str = ""      # a FINE_TUNES key, when the name says so
    projector: str = ""
    text_arch: str = ""
    name: str = ""

    @property
    def preset_family(self) -> str:
        """The presets key: a fine-tune's own, else the family's."""
        return self.fine_tune or (self.family.key if self.family else "")

    @property
    def label(self) -> str:
        if not self.family:
            return f"unknown (projector {self.projector or 'none'}, text {self.text_arch})"
        if self.fine_tune:
            return f"{FINE_TUNES[self.fine_tune].label} ({self.family.name} fine-tune)"
        return self.family.name


def identify(text_meta: dict, projector_type: str) -> Identified:
    """The family of a text model (its GGUF metadata) paired with a projector type."""
    arch = str(text_meta.get("general.architecture", ""))
    name = " ".join(str(text_meta.get(k, "")) for k in ("general.name", "general.basename",
                                                         "general.finetune")).strip()
    cands = [f for f in FAMILIES if f.projector == projector_type]
    if len(cands) > 1 and projector_type == "glm4v":
        # GLM-OCR: the name says so, or a dense glm4 text model with a NextN (MTP) layer,
        # which GLM-4.1V does not have (GLM-4.5V is glm4moe)
        nextn = int(text_meta.get(f"{arch}.nextn_predict_layers", 0) or 0)
        ocr = "ocr" in name.lower() or (arch == "glm4" and nextn > 0)
        cands = [BY_KEY["glmocr" if ocr else "glm4v"]]
    if len(cands) > 1 and projector_type == "qwen3vl_merger":
        # Qwen3.5 pairs Qwen3-VL's projector with its hybrid text model
        cands = [f for f in cands if arch in f.text_archs] or cands[:1]
    fam = cands[0] if cands else None
    tune = ""
    if fam:
        low = name.lower()
        tune = next((k for k, t in FINE_TUNES.items()
                     if fam.key in t.bases and t.needle in low), "")
    return Identified(fam, tune, projector_type, arch, name)


def merge_auto_floor(ident: Identified) -> float:
    """The least share `--merge auto` keeps for this pair (unknown projectors: the floor)."""
    return ident.family.merge_auto_floor if ident.family else Family.merge_auto_floor


def check_method(ident: Identified, fixation: bool, merging: bool) -> None:
    """Raise ValueError when the pair's family refuses a method that was asked for."""
    fam = ident.family
    if fam is None:
        return  # unknown projectors run as stock does; the methods are generic
    if fixation and fam.fixation:
        raise ValueError(f"fixation is not supported for {fam.name} models yet: {fam.fixation}")
    if merging and fam.merging:
        raise ValueError(f"token merging is not supported for {fam.name} models yet: "
                         f"{fam.merging}")


# foveate's own models (the bundled readers, the tiny test models), trained or tested on
# foveate's prompt; the generated family shapes ("foveate-<shape>-shape") take their family's
FOVEATE_PROMPT_MODELS = ("foveate-reader", "foveate-tiny")


def trained_on_foveate_prompt(model_name: str) -> bool:
    return model_name.startswith(FOVEATE_PROMPT_MODELS)


def pick_preset(ident: Identified, model_name: str, name: str | None = "auto"):
    """The preset a Reader prompts with (engine/presets.py): "auto" (or None) = the family's
    default, none for foveate's own readers (they are trained on foveate's prompt) or a
    family without published prompts; "none" = foveate's prompt; else that preset by name
    (ValueError naming the known ones)."""
    from . import presets as P

    if name in (None, "auto"):
        if trained_on_foveate_prompt(model_name):
            return None
        fam = ident.preset_family
        found = P.default_preset(fam) if fam else None
        if found is None and ident.fine_tune and ident.family:
            found = P.default_preset(ident.family.key)
        return found
    if name == "none":
        return None
    return P.preset(name)
