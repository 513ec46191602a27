"""The installed libraries are foveate's patched build, with every patch applied."""
from conftest import REPO


def test_every_patch_is_compiled_into_libllama():
    from foveate.native import bindings as B

    info = B.llama_build_info()
    assert info.startswith("foveate-native=1;")
    patches = sorted(p.name for p in (REPO / "patches").glob("*.patch"))
    assert patches, "no patches found in the repo"
    built = [p for p in info.split("patches=", 1)[1].split(",") if p]
    assert built == patches


def test_native_library_abi_and_backends():
    from foveate.native import bindings as B

    assert B.foveate.foveate_abi_version() == B.FOVEATE_ABI_VERSION
    assert "CPU" in B.backends()
    # libfoveate calls into libllama: both sides of the hook resolve to the same string
    assert B.foveate.foveate_llama_build_info().decode() == B.llama_build_info()


def _stores_before_ldtilecfg(func_src: str, tmp_path) -> int:
    """Compile ggml's tile-config function for an AMX CPU at -O3; count the stack stores
    that build the config before ldtilecfg (no AMX hardware needed)."""
    import re
    import subprocess

    tu = tmp_path / "tilecfg.cpp"
    tu.write_text("#include <immintrin.h>\n#include <cstdint>\n"
                  "struct tile_config_t { uint8_t palette_id = 0; uint8_t start_row = 0;"
                  " uint8_t reserved_0[14] = {0}; uint16_t colsb[16] = {0};"
                  " uint8_t rows[16] = {0}; };\n"
                  + func_src.replace("inline void", "void") + "\n")
    obj = tmp_path / "tilecfg.o"
    subprocess.run(["g++", "-O3", "-march=sapphirerapids", "-c", str(tu), "-o", str(obj)],
                   check=True)
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    body = asm.split("ldtilecfg")[0]
    return len(re.findall(r"\bv?mov\w*\s+[^,]+,-?0x[0-9a-f]+\(%rsp\)", body))


def test_amx_tile_config_survives_o3(tmp_path):
    """Root cause of the AMX prefill crash: GCC's _tile_loadconfig declares only 8 bytes
    of its operand, so -O3 drops the rows/colsb stores. Patch 0001 must keep them."""
    import shutil

    import pytest

    srcs = sorted(REPO.glob("build/*/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp"))
    if not srcs or not shutil.which("g++") or not shutil.which("objdump"):
        pytest.skip("needs the prepared build tree, g++ and objdump")
    text = srcs[0].read_text()
    start = text.index("inline void ggml_tile_config_init(void) {")
    func = text[start:text.index("\n}\n", start) + 3]
    # the patched function writes palette + 8 rows/colsb pairs; stock writes 2 stores
    assert _stores_before_ldtilecfg(func, tmp_path) >= 4
    stock = func.replace('__asm__ volatile("ldtilecfg %0" :: "m"(tc));', "_tile_loadconfig(&tc);")
    stock = stock.replace("#if defined(__GNUC__)", "#if 0")
    assert _stores_before_ldtilecfg(stock, tmp_path) < 4  # the bug this patch fixes


def test_the_test_extra_is_installed():
    """Server, browser and PDF tests skip when their packages are missing; this one does not,
    so a test extra that lost a package (openai 3 stopped bringing httpx) turns CI red instead
    of skipping those tests silently."""
    import importlib

    for mod in ("fastapi", "uvicorn", "openai", "httpx", "playwright", "pypdf", "python_multipart"):
        importlib.import_module(mod)


def _stock_source(rel: str) -> str:
    """A file of the unpatched llama.cpp the build was made from (the cached sdist)."""
    import os
    from pathlib import Path

    import pytest

    cache = Path(os.environ.get("FOVEATE_CACHE_DIR") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "foveate")
    f = cache / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp" / rel
    if not f.is_file():
        pytest.skip(f"no cached llama.cpp source at {f.parent}")
    return f.read_text()


def test_every_stock_op_keeps_its_stock_code():
    """foveate's ops are appended after stock's: anything that passes op codes as integers
    (ggml-rpc, a backend built from stock headers) sees the same ops with every feature off.
    The loaded libggml's name of each code is compared with the stock source's table."""
    import ctypes
    import re

    from foveate.native import bindings as B

    src = _stock_source("ggml/src/ggml.c")
    table = src[src.index("static const char * GGML_OP_NAME[GGML_OP_COUNT] = {"):]
    stock = re.findall(r'"([A-Z0-9_]+)"', table[:table.index("};")])
    assert len(stock) > 90 and stock[0] == "NONE" and "UNARY" in stock
    lib = ctypes.CDLL(str(B.LIB_DIR / "libggml-base.so"))
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    assert [lib.ggml_op_name(i).decode() for i in range(len(stock))] == stock
    ours = [lib.ggml_op_name(len(stock) + i).decode() for i in range(4)]
    assert ours == ["FIX_SELECT", "FIX_ATTN", "OT_SINKHORN", "SCATTER_ADD_ROWS"]
