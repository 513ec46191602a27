"""Random-weight GGUF pairs (text model + mmproj) with real OCR models' tensor names,
metadata and shapes, one module per model family, as llama.cpp's converter writes them.

Each family module defines
    SHAPES: dict[str, dict]   shape name (`foveate make-model --shape NAME`) -> its numbers
    text_tensors(shape, layers=None, vocab=None) -> list of specs (gguf_specs.Spec)
    mmproj_tensors(shape, layers=None) -> list of specs
    write_pair(out_dir, shape, layers=None, seed=0, vocab=None) -> (text path, mmproj path)
    sizes(shape, layers=None) -> {"text": ..., "mmproj": ...} (gguf_specs.gguf_size)
`layers` cuts every stack (text and vision) to at most that depth; `vocab` None keeps the
real vocab size, a number pads the character vocab only to that (tests: same code paths,
a fraction of the bytes). Files are `{shape}-f16.gguf` and `{shape}-mmproj-f16.gguf`.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

# tiny_model (the Qwen2.5-VL shapes and the bundled readers' writer) and deepseek_ocr_shape
# predate the per-family interface; make-model calls them by name; lfm2 writes text models
# only (no projector yet)
_NOT_FAMILIES = {"gguf_specs", "tiny_model", "deepseek_ocr_shape", "lfm2"}


def _modules() -> dict[str, str]:
    """shape name -> module name, for every family module in this folder."""
    out = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        mod = info.name
        if mod in _NOT_FAMILIES or mod.startswith("_"):
            continue
        m = importlib.import_module(f"{__name__}.{mod}")
        for shape in m.SHAPES:
            out[shape] = mod
    return out


def shape_names() -> list[str]:
    return list(_modules())


def family_module(shape: str):
    mods = _modules()
    if shape not in mods:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(mods)}")
    return importlib.import_module(f"{__name__}.{mods[shape]}")


def write_shape_pair(shape: str, out_dir, layers: int | None = None, seed: int = 0,
                     vocab: int | None = None) -> tuple[Path, Path]:
    return family_module(shape).write_pair(Path(out_dir), shape, layers=layers, seed=seed,
                                           vocab=vocab)
