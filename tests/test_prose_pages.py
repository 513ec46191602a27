"""The prose held-out pages (instruments/prose_pages.py, `foveate pages --split prose`): real
English text, named source, deterministic, only drawable characters, no page repeating another."""
from __future__ import annotations

import subprocess
import sys


def test_prose_pages_are_real_text_from_a_named_source():
    from foveate.instruments.pages import CHARSET, LAYOUTS, WORDS
    from foveate.instruments.prose_pages import make_prose_pages, source

    assert "standard-library docstrings" in source()
    for layout in ("grid", "document"):
        pages = make_prose_pages(25, LAYOUTS[layout])
        again = make_prose_pages(3, LAYOUTS[layout], start=22)
        assert [p.text for p in pages[22:]] == [p.text for p in again]   # deterministic
        assert [p.image.tobytes() for p in pages[22:]] == [p.image.tobytes() for p in again]
        texts = [p.text for p in pages]
        assert len(set(texts)) == 25
        for t in texts:
            assert set(t) <= set(CHARSET) | {"\n"}
            assert max(len(line) for line in t.split("\n")) <= LAYOUTS[layout].line_cols
        # not the generator's word stream: most words are outside its list
        words = " ".join(texts).lower().split()
        generator = set(WORDS)
        assert sum(w.strip(".,;:!?'\"()") in generator for w in words) < 0.7 * len(words)
        assert "the" in words and "text" in words


def test_the_cli_writes_prose_pages(tmp_path):
    r = subprocess.run([sys.executable, "-m", "foveate", "pages", str(tmp_path), "--split",
                        "prose", "--count", "2", "--layout", "document"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "SOURCE.txt", "prose-00000.png", "prose-00000.txt", "prose-00001.png", "prose-00001.txt"]
    bad = subprocess.run([sys.executable, "-m", "foveate", "pages", str(tmp_path), "--split",
                          "prose", "--start", "3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--split prose" in bad.stderr
