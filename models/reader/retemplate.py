"""Give the bundled text GGUFs the current chat template (instruments/shapes/tiny_model.py,
CHATML_TEMPLATE), tensors byte for byte the same, and move their shipped focal-layer
calibrations (MODEL.focal.json) to the new file's fingerprint: the calibration measured the
same weights, which a template does not touch.

Why (session 29): the template written at export joined content parts with a literal newline
right after `{% if not loop.last %}`, which llama-cpp-python's MTMDChatHandler (jinja with
trim_blocks) deletes, so a chat read saw `<|vision_end|>Read ...` where foveate.Reader (whose
prompt comes from llama.cpp's ChatML) sees `<|vision_end|>\\nRead ...`.

Run: python models/reader/retemplate.py   (idempotent: a file already current is left alone)
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python"))


def tensor_digest(path: Path) -> str:
    import gguf

    r = gguf.GGUFReader(str(path))
    h = hashlib.sha256()
    for t in r.tensors:
        h.update(t.name.encode())
        h.update(bytes(t.data.tobytes()))
    return h.hexdigest()


def retemplate(path: Path, template: str) -> bool:
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    from foveate.engine.focal_store import fingerprint

    r = gguf.GGUFReader(str(path))
    f = r.get_field(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    if f is not None and f.contents() == template:
        return False
    arch = r.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    before, old_fp = tensor_digest(path), fingerprint(path)
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), arch=arch, endianess=r.endianess)
    copy_with_new_metadata(r, w, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(
        gguf.GGUFValueType.STRING, template)}, [])
    del r
    if tensor_digest(tmp) != before:
        tmp.unlink()
        raise SystemExit(f"{path.name}: the tensors changed in the copy; nothing written")
    tmp.replace(path)
    side = path.with_name(path.name + ".focal.json")
    if side.is_file():
        rec = json.loads(side.read_text())
        if rec.get("fingerprint") == old_fp:
            rec["fingerprint"] = fingerprint(path)
            side.write_text(json.dumps(rec, indent=1) + "\n")
    return True


def main() -> None:
    from foveate.instruments.shapes.tiny_model import CHATML_TEMPLATE

    for p in sorted(HERE.glob("foveate-reader-*.gguf")):
        if "mmproj" in p.name:
            continue
        print(f"{p.name}: {'rewritten' if retemplate(p, CHATML_TEMPLATE) else 'already current'}")


if __name__ == "__main__":
    main()
