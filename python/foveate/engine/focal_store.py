"""Where fixation's focal-layer calibrations live, and which one a model file gets.

`foveate calibrate` (instruments/calibrate.py) writes them; the engine reads them for
`--focal-layers auto`: the user's own calibration of this exact file (cache, by fingerprint)
first, else one shipped beside the model as `MODEL.focal.json` made for this exact file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("FOVEATE_CACHE_DIR") or Path.home() / ".cache" / "foveate") / "focal"


def fingerprint(model: str | os.PathLike) -> str:
    """sha256 of the file's size, first and last MiB (GGUF header + tensors): cheap, and
    different for every export or quantization of a model."""
    p = Path(model)
    h = hashlib.sha256(str(p.stat().st_size).encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, p.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:32]


def sidecar(model) -> Path:
    """Where a calibration shipped with a model file lives: `MODEL.focal.json` beside it."""
    return Path(str(model) + ".focal.json")


def _read_layers(f: Path, fp: str | None) -> list[int] | None:
    """The focal layers in calibration file f; None if absent, unreadable, or (fp given) made
    for another file."""
    if not f.is_file():
        return None
    try:
        record = json.loads(f.read_text())
        if fp is not None and record.get("fingerprint") != fp:
            return None
        return [int(x) for x in record["focal_layers"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def saved_focal_layers(model) -> list[int] | None:
    """The user's own calibration of this file (cache, by fingerprint), else one shipped
    beside it for this exact file, else None (the engine's default layer)."""
    fp = fingerprint(model)
    return _read_layers(cache_dir() / f"{fp}.json", None) or _read_layers(sidecar(model), fp)
