"""Stock llama.cpp for `foveate bench`: an unpatched llama-bench built from the same cached
llama-cpp-python 0.3.36 source foveate's install used, run side by side with foveate.

Bench-only and on demand (the install still compiles llama.cpp once): the first
`foveate bench --stock` builds `llama-bench` (static, Release, same CPU flags as the default
install) into the cache, about 5 minutes on 2 cores; later runs reuse it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

SDIST_NAME = "llama_cpp_python-0.3.36"


def cache_dir() -> Path:
    """The cache cmake/llama_source.py fills at install time."""
    if os.environ.get("FOVEATE_CACHE_DIR"):
        return Path(os.environ["FOVEATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "foveate"


def stock_source() -> Path:
    root = Path(os.environ["FOVEATE_SDIST_DIR"]) if os.environ.get("FOVEATE_SDIST_DIR") \
        else cache_dir() / SDIST_NAME
    src = root / "vendor" / "llama.cpp"
    if not (src / "CMakeLists.txt").is_file():
        raise FileNotFoundError(f"no pristine llama.cpp source at {src}: it is cached by "
                                f"`pip install` of foveate (or set FOVEATE_SDIST_DIR)")
    return src


def llama_bench(jobs: int | None = None) -> Path:
    """Path to the stock llama-bench, building it on first use."""
    src = stock_source()
    build = cache_dir() / "stock-build"
    exe = build / "bin" / "llama-bench"
    if exe.is_file():
        return exe
    cmake = shutil.which("cmake")
    if not cmake:
        raise FileNotFoundError("building stock llama-bench needs cmake on PATH")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([cmake, "-S", str(src), "-B", str(build), *gen, "-DCMAKE_BUILD_TYPE=Release",
                    "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake, "--build", str(build), "--target", "llama-bench",
                    "-j", str(jobs or os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return exe


def run(model: str, n_prompt: int, n_decode: int, threads: int, repetitions: int = 3,
        flash_attn: bool | None = None) -> tuple[float, float]:
    """Stock prefill tokens/s over n_prompt tokens, and decode tokens/s for n_decode tokens at
    depth n_prompt (the KV cache holding the prompt, as after an image). Text tokens stand in
    for image embeddings: the same matrices run, only the input row lookup differs."""
    exe = llama_bench()
    fa = [] if flash_attn is None else ["-fa", "on" if flash_attn else "off"]
    common = [str(exe), "-m", model, "-t", str(threads), "-r", str(repetitions), "-o", "json", *fa]
    pre = json.loads(subprocess.run(common + ["-p", str(n_prompt), "-n", "0"], check=True,
                                    capture_output=True, text=True).stdout)
    dec = json.loads(subprocess.run(common + ["-p", "0", "-n", str(n_decode), "-d", str(n_prompt)],
                                    check=True, capture_output=True, text=True).stdout)
    return float(pre[0]["avg_ts"]), float(dec[0]["avg_ts"])
