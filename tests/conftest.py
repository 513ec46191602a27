"""Shared fixtures: tiny random-weight Qwen2.5-VL models, generated once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    from foveate.instruments.shapes.tiny_model import TinyShape, quantize, write_projector, write_tiny_pair

    d = tmp_path_factory.mktemp("models")
    f16, mmproj = write_tiny_pair(d)
    out = {"f16": f16, "mmproj": mmproj,
           "q8_0": quantize(f16, d / "tiny-q8_0.gguf", "Q8_0"),
           "q4_k_m": quantize(f16, d / "tiny-q4_k_m.gguf", "Q4_K_M")}
    # a projector whose output width (128) does not match the model's n_embd (256)
    out["mmproj_other"] = write_projector(d / "other-mmproj.gguf", TinyShape(proj_dim=128))
    return out


@pytest.fixture(scope="session")
def page() -> Path:
    return DATA / "page-hello.png"


@pytest.fixture(scope="session")
def reader(models):
    from foveate import Reader

    r = Reader(models["q8_0"], models["mmproj"], n_ctx=1024, threads=2)
    yield r
    r.close()


def md_pages(text: str) -> dict[int, str]:
    """Page number -> text of a markdown output (pages start with <!-- page N of M: ... -->)."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("<!-- page "):
            cur = int(line.split()[2])
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}
