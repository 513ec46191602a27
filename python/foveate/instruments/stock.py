"""Stock llama.cpp for `foveate bench`: an unpatched llama-bench built from the same cached
llama-cpp-python 0.3.36 source foveate's install used, run side by side with foveate.

Bench-only and on demand (the install still compiles llama.cpp once): the first
`foveate bench --stock` builds `llama-bench` (static, Release, same CPU flags as the default
install) into the cache, about 5 minutes on 2 cores; later runs reuse it.

On an Intel Xeon with AMX, stock llama.cpp built at -O3 dies on quantized prefill (SIGILL or
SIGSEGV in the AMX kernels: the tile-config bug patch 0001 fixes; ../shared/design/build-notes).
`run` then raises StockCrashed, the bench reports the crash as a row and times the reference
that runs there: stock plus patch 0001 alone (`llama_bench(with_0001=True)`), named so in the
table, built in the same folder with the patch applied for one incremental build."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

SDIST_NAME = "llama_cpp_python-0.3.36"
AMX_PATCH = "0001-ggml-amx-load-full-tile-config.patch"


class StockCrashed(RuntimeError):
    """Stock llama-bench died by a signal; `reason` is the one-line cause for the table."""

    def __init__(self, signame: str, reason: str):
        super().__init__(reason)
        self.signame, self.reason = signame, reason


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(line.startswith("flags") and " amx_tile" in line for line in cpuinfo.splitlines())


def crash_reason(returncode: int, amx: bool) -> tuple[str, str]:
    """(signal name, table text) for a llama-bench that died with -returncode."""
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = ", the AMX tile-config bug" if amx and name in ("SIGILL", "SIGSEGV") else ""
    return name, f"stock llama.cpp crashed ({name}{why})"


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


def amx_patch() -> Path:
    """Patch 0001 as the wheel installs it (foveate/_patches), or in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for p in (here / "_patches" / AMX_PATCH, here.parents[1] / "patches" / AMX_PATCH):
        if p.is_file():
            return p
    raise FileNotFoundError(f"{AMX_PATCH} is not installed with foveate (foveate/_patches)")


def stock_tree() -> Path:
    """A copy of the pristine source that the stock build compiles (made once, cached): the
    stock + 0001 binary is built from it with patch 0001 applied for that build only."""
    dst = cache_dir() / "stock-src" / "llama.cpp"
    if (dst / ".foveate-stock-copy").is_file():
        return dst
    tmp = dst.with_name("llama.cpp.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    src = stock_source()
    # its top-level .git is a submodule link into llama-cpp-python's repo, absent here
    shutil.copytree(src, tmp, symlinks=True,
                    ignore=lambda d, names: [".git"] if Path(d) == src and ".git" in names else [])
    (tmp / ".foveate-stock-copy").write_text(f"pristine {SDIST_NAME}\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


@contextlib.contextmanager
def patch_0001_applied(tree: Path):
    """Patch 0001 applied to `tree` for the duration, then reverted (the tree is pristine
    again afterwards, whatever happened inside)."""
    if not shutil.which("git"):
        raise FileNotFoundError("applying patch 0001 to stock llama.cpp needs git on PATH")
    # the cache may sit inside a git checkout: patch this folder as a plain directory
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tree.parent))
    git = lambda *args: subprocess.run(["git", "apply", "--whitespace=nowarn", *args,   # noqa: E731
                                        str(amx_patch())], cwd=tree, env=env,
                                       capture_output=True, text=True)
    r = git()
    if r.returncode != 0:
        raise RuntimeError(f"patch 0001 does not apply to the stock source: {r.stderr.strip()}")
    try:
        yield tree
    finally:
        git("-R")


def _revert_leftover_0001(tree: Path) -> None:
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tree.parent))
    check = subprocess.run(["git", "apply", "-R", "--check", str(amx_patch())], cwd=tree,
                           env=env, capture_output=True)
    if check.returncode == 0:
        subprocess.run(["git", "apply", "-R", str(amx_patch())], cwd=tree, env=env,
                       check=True, capture_output=True)


def _configured_from(build: Path, src: Path) -> bool:
    """Whether `build` is a configured build folder of the source tree `src`."""
    try:
        cache = (build / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return False
    return f"CMAKE_HOME_DIRECTORY:INTERNAL={src}\n" in cache


def llama_bench(jobs: int | None = None, with_0001: bool = False) -> Path:
    """Path to the stock llama-bench (or stock + patch 0001), building it on first use.

    Both come from one build folder: the binary is static, so each is copied out once built;
    the 0001 one recompiles only ggml-cpu/amx/mmq.cpp and relinks (seconds, not a second
    5-minute build)."""
    out = cache_dir() / "stock-bin" / ("llama-bench-0001" if with_0001 else "llama-bench")
    if out.is_file():
        return out
    cmake = shutil.which("cmake")
    if not cmake:
        raise FileNotFoundError("building stock llama-bench needs cmake on PATH")
    src, build = stock_tree(), cache_dir() / "stock-build"
    if not _configured_from(build, src):
        shutil.rmtree(build, ignore_errors=True)   # none yet, or an older layout's
        build.mkdir(parents=True)
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run([cmake, "-S", str(src), "-B", str(build), *gen,
                        "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                        "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON"],
                       check=True, stdout=subprocess.DEVNULL)

    def compile_() -> None:
        subprocess.run([cmake, "--build", str(build), "--target", "llama-bench",
                        "-j", str(jobs or os.cpu_count() or 2)], check=True,
                       stdout=subprocess.DEVNULL)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / "bin" / "llama-bench", out)

    if with_0001:
        with patch_0001_applied(src):
            compile_()
    else:
        _revert_leftover_0001(src)   # a killed 0001 build may have left it applied
        compile_()
    return out


def run(model: str, n_prompt: int, n_decode: int, threads: int, repetitions: int = 3,
        flash_attn: bool | None = None, with_0001: bool = False) -> tuple[float, float]:
    """Stock prefill tokens/s over n_prompt tokens, and decode tokens/s for n_decode tokens at
    depth n_prompt (the KV cache holding the prompt, as after an image). Text tokens stand in
    for image embeddings: the same matrices run, only the input row lookup differs.
    Raises StockCrashed when llama-bench dies by a signal."""
    exe = llama_bench(with_0001=with_0001)
    fa = [] if flash_attn is None else ["-fa", "on" if flash_attn else "off"]
    common = [str(exe), "-m", model, "-t", str(threads), "-r", str(repetitions), "-o", "json", *fa]

    def bench(args: list[str]) -> float:
        r = subprocess.run(common + args, capture_output=True, text=True)
        if r.returncode < 0:
            raise StockCrashed(*crash_reason(r.returncode, cpu_has_amx()))
        if r.returncode != 0:
            raise RuntimeError(f"stock llama-bench failed (exit {r.returncode}): "
                               f"{(r.stderr.strip().splitlines() or [''])[-1]}")
        return float(json.loads(r.stdout)[0]["avg_ts"])

    pre = bench(["-p", str(n_prompt), "-n", "0"])
    dec = bench(["-p", "0", "-n", str(n_decode), "-d", str(n_prompt)])
    return pre, dec
