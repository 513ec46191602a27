"""`foveate info`: the loaded libraries and the patch series compiled in."""
from __future__ import annotations

from . import flags as F


def add_parser(sub) -> None:
    i = sub.add_parser("info", help="show the loaded libraries and patch series", formatter_class=F.HELP)
    i.set_defaults(fn=cmd_info)


def cmd_info(a) -> int:
    from ...native import bindings as B

    print(f"libraries: {B.LIB_DIR}")
    print(f"backends: {', '.join(B.backends())}")
    print(f"llama.cpp: {B.llama_build_info()}")
    return 0
