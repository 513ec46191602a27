"""What the family shape tests (tests/test_shape_*.py) share: a file's sha256, and a GGUF's
tensor table as it reads back beside the one its specs must read back as."""
from __future__ import annotations

import hashlib

import numpy as np


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def tensors_read(reader) -> dict:
    """name -> (shape as written, type name) of a gguf.GGUFReader's tensors."""
    return {t.name: (tuple(int(x) for x in t.shape[::-1]), t.tensor_type.name)
            for t in reader.tensors}


def tensors_written(specs) -> dict:
    """The same table for a writer's specs (gguf_specs.Spec: name, shape, dtype, _)."""
    return {n: (s, "F16" if d == np.float16 else "F32") for n, s, d, _ in specs}
