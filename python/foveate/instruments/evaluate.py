"""Character error rate (CER) of a reader over pages with ground truth.

CER = Levenshtein edit distance / length of the ground truth (rapidfuzz), the usual OCR
metric; accuracy = 1 - CER (floored at 0)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def cer(predicted: str, truth: str) -> float:
    from rapidfuzz.distance import Levenshtein

    predicted, truth = predicted.strip(), truth.strip()
    if not truth:
        return 0.0 if not predicted else 1.0
    return Levenshtein.distance(predicted, truth) / len(truth)


@dataclass
class EvalResult:
    pages: list[str] = field(default_factory=list)
    cers: list[float] = field(default_factory=list)
    chars: int = 0
    edits: int = 0
    image_tokens: int = 0
    image_tokens_merged: int = 0     # after token merging (== image_tokens when off)
    merge_ratios: list[float] = field(default_factory=list)

    @property
    def cer(self) -> float:
        """Micro-averaged CER: total edits / total ground-truth characters."""
        return self.edits / self.chars if self.chars else 0.0

    @property
    def accuracy(self) -> float:
        return max(0.0, 1.0 - self.cer)


def page_pairs(paths, missing: list | None = None) -> list[tuple[Path, str]]:
    """Images with a same-named .txt ground truth; folders are expanded to their *.png.
    An image without one is an error, unless `missing` is a list: then it is appended there
    and skipped (`foveate eval` reports those pages and goes on)."""
    out = []
    for p in map(Path, paths):
        imgs = sorted(p.glob("*.png")) if p.is_dir() else [p]
        for img in imgs:
            gt = img.with_suffix(".txt")
            if not gt.is_file():
                if missing is None:
                    raise FileNotFoundError(f"no ground truth {gt} for {img}")
                missing.append(img)
                continue
            out.append((img, gt.read_text().rstrip("\n")))
    return out


def evaluate(reader, pairs, max_tokens: int = 1024, **read_kwargs) -> EvalResult:
    from rapidfuzz.distance import Levenshtein

    res = EvalResult()
    for img, truth in pairs:
        r = reader.read(img, max_tokens=max_tokens, **read_kwargs)
        pred = r.text.strip()
        res.pages.append(str(img))
        res.cers.append(cer(pred, truth))
        res.edits += Levenshtein.distance(pred, truth.strip())
        res.chars += len(truth.strip())
        res.image_tokens += r.stats.image_tokens
        res.image_tokens_merged += r.stats.image_tokens_merged or r.stats.image_tokens
        res.merge_ratios.append(r.stats.merge_ratio)
    return res
