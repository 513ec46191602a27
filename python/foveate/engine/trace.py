"""Where the model looked: fixation's selection at every decode step, on the page.

`Engine.read(..., trace=True)` records, after each decode step, the image tokens the focal
layers selected (`llama_fixation_get_last`, as image-token ordinals of the sequence) and the
token that step produced. `Trace` maps them to the page: with merging, ordinal i is the i-th
kept token (`kept[i]`, an id of the projector's grid); a grid id is cell (id % nx, id // nx)
of the nx x ny grid of merged patches (Qwen-style projectors: 2x2 patches of 14 px), scaled
to the page as given. Projectors whose image tokens are not one such grid (DeepSeek-OCR's
tiles and global view with newline rows) have no mapping yet: `TraceUnavailable`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


# projectors whose image tokens are one row-major grid of merged 2x2 patches (mtmd's nx x ny)
GRID_PROJECTORS = {"qwen2vl_merger", "qwen2.5vl_merger", "qwen3vl_merger"}


class TraceUnavailable(ValueError):
    """The page's image tokens cannot be mapped to page coordinates (yet)."""


@dataclass
class TraceStep:
    text: str                  # what this step produced (the token's text)
    cells: list                # grid ids the focal layers selected for it (empty: dense step)


@dataclass
class Trace:
    grid: tuple                # (nx, ny): image tokens per row, rows
    image_size: tuple          # (width, height) of the page as given
    kept: list | None = None   # merging: grid ids of the kept tokens, ascending (None: all)
    ratio: float = 0.0         # fixation ratio of the run
    steps: list = field(default_factory=list)
    page: object = None        # the page's pixels (inputs.images.Page), for drawing on

    def page_image(self):
        from PIL import Image
        return Image.frombytes("RGB", (self.page.width, self.page.height), self.page.rgb)

    def grid_ids(self, ordinals) -> list[int]:
        """Image-token ordinals of the sequence -> ids on the projector's grid."""
        if self.kept is None:
            return [int(o) for o in ordinals]
        return [int(self.kept[o]) for o in ordinals if 0 <= o < len(self.kept)]

    def box(self, grid_id: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in page pixels of one grid cell."""
        nx, ny = self.grid
        w, h = self.image_size
        c, r = grid_id % nx, grid_id // nx
        return (c * w / nx, r * h / ny, (c + 1) * w / nx, (r + 1) * h / ny)

    def counts(self) -> list[int]:
        """How many steps attended each grid cell."""
        nx, ny = self.grid
        out = [0] * (nx * ny)
        for s in self.steps:
            for g in s.cells:
                if 0 <= g < len(out):
                    out[g] += 1
        return out

    def as_dict(self) -> dict:
        return {"grid": list(self.grid), "image_size": list(self.image_size), "kept": self.kept,
                "ratio": self.ratio,
                "steps": [{"text": s.text, "cells": s.cells} for s in self.steps]}
