"""Validate a GGUF file in Python before llama.cpp touches it.

llama.cpp rejects most broken files itself, but its messages go to a log and some
paths abort. Reading the header here gives a clear exception that names the file:
missing, unreadable, not GGUF, unsupported version, or truncated (tensor data past
the end of the file).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FoveateError

GGUF_MAGIC = b"GGUF"
# GGUF value types -> struct format (scalars); 8 = string, 9 = array.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_MAX_COUNT = 1 << 40  # anything larger is a corrupt header, not a real model


@dataclass
class GGUFInfo:
    path: Path
    version: int
    metadata: dict = field(default_factory=dict)  # scalars and strings only; arrays as lengths
    n_tensors: int = 0
    data_end: int = 0  # byte offset one past the last tensor's data

    @property
    def arch(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def projector_type(self) -> str:
        """An mmproj's projector, as clip.cpp reads it: the default key, else (mixed-modality
        projectors) the vision one."""
        return str(self.metadata.get("clip.projector_type")
                   or self.metadata.get("clip.vision.projector_type", ""))


class _Reader:
    def __init__(self, f, size: int):
        self.f, self.size = f, size

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise EOFError
        return b

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("Q")
        if n > self.size:
            raise EOFError
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool):
        if vtype in _SCALAR:
            return self.unpack(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, n = self.unpack("I"), self.unpack("Q")
            if n > _MAX_COUNT:
                raise ValueError(f"array of {n} items")
            if itype in _SCALAR:  # skip fixed-size items in one seek
                size = struct.calcsize(_SCALAR[itype]) * n
                if self.f.tell() + size > self.size:
                    raise EOFError
                self.f.seek(size, os.SEEK_CUR)
            else:
                for _ in range(n):
                    self.value(itype, keep=False)
            return n
        raise ValueError(f"unknown metadata value type {vtype}")


def _tensor_nbytes(ggml_type: int, dims: list[int]) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise ValueError(f"unknown tensor type {ggml_type}")
    n = 1
    for d in dims:
        n *= d
    return n // block * type_size


def read_gguf_info(path: os.PathLike | str, error: type[FoveateError], what: str) -> GGUFInfo:
    """Parse the header of `path`; raise `error` with a message naming the file."""
    p = Path(path)
    if not p.exists():
        raise error(f"{what} file not found: {p}")
    if not p.is_file():
        raise error(f"{what} path is not a file: {p}")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise error(f"{what} file is not readable: {p}: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        r = _Reader(f, size)
        try:
            if size < 24 or r.read(4) != GGUF_MAGIC:
                raise error(f"{what} file is not a GGUF file (bad magic): {p}")
            version = r.unpack("I")
            if version not in (2, 3):
                raise error(f"{what} file has unsupported GGUF version {version}: {p}")
            n_tensors, n_kv = r.unpack("Q"), r.unpack("Q")
            if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
                raise error(f"{what} file has a corrupt GGUF header: {p}")
            info = GGUFInfo(path=p, version=version, n_tensors=n_tensors)
            for _ in range(n_kv):
                key = r.string()
                info.metadata[key] = r.value(r.unpack("I"), keep=True)
            tensors = []
            for _ in range(n_tensors):
                r.string()  # name
                n_dims = r.unpack("I")
                if n_dims > 8:
                    raise ValueError(f"tensor with {n_dims} dimensions")
                dims = [r.unpack("Q") for _ in range(n_dims)]
                ggml_type, offset = r.unpack("I"), r.unpack("Q")
                tensors.append((offset, _tensor_nbytes(ggml_type, dims)))
            align = int(info.metadata.get("general.alignment", 32)) or 32
            data_start = (f.tell() + align - 1) // align * align
            info.data_end = data_start + max((o + n for o, n in tensors), default=0)
        except EOFError:
            raise error(f"{what} file is truncated (header ends early): {p}") from None
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            raise error(f"{what} file has a corrupt GGUF header ({e}): {p}") from None
        if info.data_end > size:
            raise error(f"{what} file is truncated: tensor data needs {info.data_end} bytes, "
                        f"file has {size}: {p}")
        return info
