"""The README's code blocks, as tests/test_readme.py runs them.

Every ```sh and ```python block of README.md is run as written. A block may be preceded by
one marker line saying how:

    <!-- readme-test: install-read -->    the first of the two commands
    <!-- readme-test: install-test -->    the second (what .ci/run runs)
    <!-- readme-test: skip: REASON -->    not run here; REASON says what it needs, and the
                                          README's own text must say it too

Unmarked blocks run in a fresh folder holding the placeholders the README uses, copies of
the bundled reader: model.gguf, mmproj.gguf, page.png (the sample page) and model.gguf's
calibration beside it, and doc.pdf (three generated pages).
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BUNDLED = REPO / "models" / "reader"
PLACEHOLDERS = {
    "model.gguf": BUNDLED / "foveate-reader-q8_0.gguf",
    "model.gguf.focal.json": BUNDLED / "foveate-reader-q8_0.gguf.focal.json",
    "mmproj.gguf": BUNDLED / "foveate-reader-mmproj-f16.gguf",
    "page.png": BUNDLED / "sample-page.png",
    "page.txt": BUNDLED / "sample-page.txt",   # a draft of page.png (README: Drafts)
}
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    lang: str
    code: str
    line: int          # 1-based line of the opening fence
    mark: str = ""     # "", "install-read", "install-test" or "skip: REASON"

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang}"


def blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        mark = _MARK.match(prev)
        out.append(Block(m.group(1), "\n".join(lines[i + 1:j]), i + 1, mark.group(1) if mark else ""))
        i = j + 1
    return out


def runnable() -> list[Block]:
    return [b for b in blocks() if b.lang in ("sh", "python")]


def readme_test_command() -> str:
    (b,) = [b for b in blocks() if b.mark == "install-test"]
    return b.code.strip()


def commands(block: Block) -> list[str]:
    """One shell command per line (a trailing backslash continues it); comment lines dropped."""
    out, cur = [], ""
    for ln in block.code.splitlines():
        if not cur and (not ln.strip() or ln.lstrip().startswith("#")):
            continue
        cur += ln[:-1] + " " if ln.endswith("\\") else ln
        if not ln.endswith("\\"):
            out.append(cur.strip())
            cur = ""
    return out


def placeholders(folder: Path) -> Path:
    """Copies, not links: a command that writes beside model.gguf must not touch the bundle.
    doc.pdf: three held-out generated pages, one scanned image per page."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, src in PLACEHOLDERS.items():
        shutil.copy(src, folder / name)
    pages = [Image.open(p).convert("RGB") for p in sorted((REPO / "tests/data/pages").glob("*.png"))[:3]]
    pages[0].save(folder / "doc.pdf", save_all=True, append_images=pages[1:], resolution=72)
    return folder
