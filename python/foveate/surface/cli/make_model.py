"""`foveate make-model`: random-weight GGUF pairs with real OCR models' shapes."""
from __future__ import annotations

from pathlib import Path

from . import flags as F


def add_parser(sub) -> None:
    mk = sub.add_parser("make-model", help="write random-weight GGUFs with real OCR models' "
                                           "shapes (for tests and timing; outputs are noise)", formatter_class=F.HELP)
    mk.add_argument("out", help="output folder")
    mk.add_argument("--shape", default="tiny",
                    help="tiny | qwen2.5-vl-3b | qwen2.5-vl-7b | deepseek-ocr | another family's "
                         "shape (`foveate models` lists them)")
    mk.add_argument("--vocab", type=int, default=None,
                    help="pad the character vocab only to this size instead of the real "
                         "model's (smaller files; other families than tiny/qwen2.5/deepseek-ocr)")
    mk.add_argument("--layers", type=int, default=None, help="cut text and vision depth")
    mk.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    mk.add_argument("--quantize", nargs="*", default=[],
                    help="also write these quantizations, e.g. Q8_0 Q4_K_M (default: none)")
    mk.set_defaults(fn=cmd_make_model)


def cmd_make_model(a) -> int:
    from ...instruments.shapes import shape_names, write_shape_pair
    from ...instruments.shapes.tiny_model import SHAPES, make_shape, quantize, write_tiny_pair

    if a.layers is not None and a.layers < 1:
        raise ValueError(f"--layers must be at least 1, got {a.layers}")
    if a.shape == "deepseek-ocr":
        from ...instruments.shapes.deepseek_ocr_shape import write_deepseek_ocr_pair
        model, mmproj = write_deepseek_ocr_pair(Path(a.out), layers=a.layers, seed=a.seed)
    elif a.shape in SHAPES:
        model, mmproj = write_tiny_pair(Path(a.out), make_shape(a.shape, a.layers), seed=a.seed,
                                        name=a.shape)
    elif a.shape in shape_names():
        model, mmproj = write_shape_pair(a.shape, Path(a.out), layers=a.layers, seed=a.seed,
                                         vocab=a.vocab)
    else:
        known = [*SHAPES, "deepseek-ocr", *shape_names()]
        raise ValueError(f"unknown shape {a.shape!r}; known: {', '.join(known)}")
    print(model)
    print(mmproj)
    for q in a.quantize:
        print(quantize(model, model.with_name(f"{a.shape}-{q.lower()}.gguf"), q))
    return 0
