"""README's "Supported models" table says what engine/families.py and engine/presets.py do,
row by row (tests/test_families.py runs each row's family end to end)."""
from __future__ import annotations

import re
from pathlib import Path

from foveate.engine.families import FAMILIES
from foveate.engine.presets import default_preset

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows():
    text = README.read_text()
    body = text.split("<!-- supported-models-table -->")[1].split("<!-- /supported-models-table -->")[0]
    lines = [l for l in body.strip().splitlines() if l.startswith("|")][2:]
    split = lambda l: [c.strip() for c in re.split(r"(?<!\\)\|", l.strip())[1:-1]]
    return [split(l) for l in lines]


def _codes(cell):
    return re.findall(r"`([^`]+)`", cell)


def test_every_family_has_its_row():
    rows = _rows()
    assert [r[0] for r in rows] == [f.name for f in FAMILIES]
    for f, (name, archs, proj, pos, fix, merge, preset, shapes, _) in zip(FAMILIES, rows):
        assert _codes(archs) == list(f.text_archs), name
        assert _codes(proj) == [f.projector], name
        assert pos == f.rope, name
        assert fix == ("yes" if not f.fixation else "refused"), name
        assert merge == ("yes" if not f.merging else "refused"), name
        d = default_preset(f.key)
        assert _codes(preset) == ([d.name] if d else []), name
        assert _codes(shapes) == list(f.shapes), name
