"""`foveate models`: the OCR model families foveate knows, what it supports for each, and
their prompt presets; with -m/--mmproj, which family a GGUF pair is."""
from __future__ import annotations

from ...engine.families import (FAMILIES, FINE_TUNES, identify, pick_preset,
                                trained_on_foveate_prompt)
from ...engine.presets import default_preset, presets_for
from ...errors import ModelError, ProjectorError
from ...inputs.gguf_check import read_gguf_info
from . import flags as F


def add_parser(sub) -> None:
    mo = sub.add_parser("models", help="the OCR model families foveate knows, what it "
                                       "supports for each, their prompt presets; with -m and "
                                       "--mmproj, which family a GGUF pair is", formatter_class=F.HELP)
    mo.add_argument("-m", "--model", default=None, help="language model GGUF")
    mo.add_argument("--mmproj", default=None, help="its image projector GGUF")
    mo.set_defaults(fn=cmd_models)


def cmd_models(a) -> int:
    if bool(a.model) != bool(a.mmproj):
        raise ValueError("foveate models: give both -m MODEL and --mmproj MMPROJ, or neither")
    print(describe_pair(a.model, a.mmproj) if a.model else family_table())
    return 0


def _support(reason: str) -> str:
    return "yes" if not reason else f"refused: {reason}"


def _presets_cell(family: str) -> str:
    found = presets_for(family)
    if not found:
        return "- (foveate's prompt)"
    d = default_preset(family)
    return f"{d.name} (+{len(found) - 1})" if len(found) > 1 else d.name


def _table(rows) -> list[str]:
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * n for n in w))
    return lines


def family_table() -> str:
    rows = [("family", "LLM arch", "projector", "RoPE", "fixation", "merging",
             "default preset (+ others)", "make-model --shape")]
    for f in FAMILIES:
        rows.append((f.name, "/".join(f.text_archs), f.projector, f.rope,
                     "yes" if not f.fixation else "refused", "yes" if not f.merging else "refused",
                     _presets_cell(f.key), ", ".join(f.shapes) or "-"))
    base = {"olmocr": "Qwen2-VL / 2.5-VL", "nanonets-ocr": "Qwen2.5-VL", "mineru25": "Qwen2-VL",
            "docling": "Idefics3 / SmolVLM"}
    for key, tune in FINE_TUNES.items():
        rows.append((f"  {tune.label}", f"fine-tune of {base.get(key, 'Qwen2-VL / 2.5-VL')}", "", "", "",
                     "", _presets_cell(key), ""))
    lines = _table(rows)
    refused = [(f.name, what, why) for f in FAMILIES
               for what, why in (("fixation", f.fixation), ("merging", f.merging)) if why]
    if refused:
        lines.append("")
        lines += [f"{name}: {what} refused: {why}" for name, what, why in refused]
    lines += ["", "foveate models -m MODEL.gguf --mmproj MMPROJ.gguf: which family a pair is, "
                  "and its presets with their sources"]
    return "\n".join(lines)


def describe_pair(model: str, mmproj: str) -> str:
    minfo = read_gguf_info(model, ModelError, "model")
    pinfo = read_gguf_info(mmproj, ProjectorError, "projector")
    if pinfo.arch != "clip":
        raise ProjectorError(f"projector file is not an mmproj (architecture '{pinfo.arch}'): "
                             f"{mmproj}")
    ident = identify(minfo.metadata, pinfo.projector_type)
    name = str(minfo.metadata.get("general.name", ""))
    out = [f"model:     {model} (arch {ident.text_arch}{', ' + name if name else ''})",
           f"projector: {mmproj} ({ident.projector or 'no projector type'})",
           f"family:    {ident.label}"]
    fam = ident.family
    if fam is None:
        out.append("foveate does not know this projector: it reads as stock llama.cpp does; "
                   "fixation and merging are untested on it")
        return "\n".join(out)
    if fam.text_archs and ident.text_arch not in fam.text_archs:
        out.append(f"warning:   {fam.name} pairs with {'/'.join(fam.text_archs)} text models, "
                   f"not {ident.text_arch}")
    out.append(f"RoPE:      {fam.rope}")
    out.append(f"fixation:  {_support(fam.fixation)}")
    out.append(f"merging:   {_support(fam.merging)}")
    chosen = pick_preset(ident, name, "auto")
    presets = presets_for(ident.preset_family) or (presets_for(fam.key) if ident.fine_tune else [])
    if not presets:
        out.append("presets:   none published for this family; foveate's prompt is used")
    else:
        out.append("presets:   (--preset NAME; * = what --preset auto picks)")
        for p in presets:
            mark = "*" if chosen is not None and p.name == chosen.name else " "
            lines = p.prompt.strip().splitlines()
            first = repr(lines[0]) if lines else "(the image alone, no text)"
            more = " ..." if len(lines) > 1 else ""
            out.append(f"  {mark} {p.name}: {first[:70]}{more}")
            out.append(f"      source: {p.source}")
    if chosen is None and trained_on_foveate_prompt(name):
        out.append("           (a foveate reader: --preset auto keeps foveate's prompt, "
                   "the one it was trained on)")
    return "\n".join(out)
