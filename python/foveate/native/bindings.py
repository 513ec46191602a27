"""Low-level layer: load foveate's patched libraries and bind its C API.

The wheel installs llama-cpp-python 0.3.36's Python layer (package `llama_cpp`) with
foveate's own build of libllama/libggml/libmtmd in `llama_cpp/lib`, so `llama_cpp`
and `llama_cpp.mtmd_cpp` already load the patched libraries. We still point
LLAMA_CPP_LIB_PATH / MTMD_CPP_LIB at that folder explicitly (unless the user set them),
then check that the loaded libllama carries foveate's hook.
"""
from __future__ import annotations

import collections
import ctypes
import importlib.util
import os
import threading
from pathlib import Path

from ..errors import BuildError

FOVEATE_ABI_VERSION = 2


def _lib_dir() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("package llama_cpp not found: install foveate with `pip install .`")
    return Path(list(spec.submodule_search_locations)[0]) / "lib"


LIB_DIR = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or _lib_dir())
os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(LIB_DIR))
os.environ.setdefault("MTMD_CPP_LIB", str(LIB_DIR))

try:
    import llama_cpp  # noqa: E402  (must follow the environment above)
    import llama_cpp.llama_cpp as llama  # noqa: E402
    import llama_cpp.mtmd_cpp as mtmd  # noqa: E402
except (OSError, RuntimeError, FileNotFoundError) as e:  # library missing / wrong arch
    raise BuildError(f"cannot load foveate's llama.cpp libraries from {LIB_DIR}: {e}") from None


class NodeTime(ctypes.Structure):
    """native/lib/foveate.h foveate_node_time: one node of a profiled ggml graph."""
    _fields_ = [("op", ctypes.c_char * 32), ("name", ctypes.c_char * 64),
                ("type", ctypes.c_char * 8), ("type0", ctypes.c_char * 8),
                ("type1", ctypes.c_char * 8),
                ("ne", ctypes.c_int64 * 4), ("ne0", ctypes.c_int64 * 4),
                ("ne1", ctypes.c_int64 * 4), ("ne2", ctypes.c_int64 * 4),
                ("src0_leaf", ctypes.c_int32), ("us", ctypes.c_double)]


def _load_foveate() -> ctypes.CDLL:
    path = LIB_DIR / "libfoveate.so"
    try:
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise BuildError(f"cannot load {path}: {e}") from None
    lib.foveate_abi_version.restype = ctypes.c_int32
    lib.foveate_llama_build_info.restype = ctypes.c_char_p
    lib.foveate_backends.restype = ctypes.c_char_p
    p, i32 = ctypes.c_void_p, ctypes.c_int32
    lib.foveate_profile_new.restype = p
    lib.foveate_profile_free.argtypes = [p]
    lib.foveate_profile_free.restype = None
    lib.foveate_profile_count.argtypes = [p]
    lib.foveate_profile_count.restype = i32
    lib.foveate_profile_get.argtypes = [p, i32, ctypes.POINTER(NodeTime)]
    lib.foveate_profile_get.restype = i32
    lib.foveate_mul_mat_gflops.argtypes = [i32] * 6
    lib.foveate_mul_mat_gflops.restype = ctypes.c_double
    fp = ctypes.POINTER(ctypes.c_float)
    lib.foveate_mul_mat.argtypes = [i32] * 5 + [fp, fp, fp]
    lib.foveate_mul_mat.restype = i32
    if lib.foveate_abi_version() != FOVEATE_ABI_VERSION:
        raise BuildError(f"{path} has ABI {lib.foveate_abi_version()}, "
                         f"this package expects {FOVEATE_ABI_VERSION}: reinstall foveate")
    return lib


foveate = _load_foveate()


def llama_build_info() -> str:
    """The hook string compiled into libllama (patch series); raises if it is absent."""
    try:
        fn = llama._lib.llama_foveate_build_info
    except AttributeError:
        raise BuildError(f"{LIB_DIR}/libllama.so is a stock llama.cpp without foveate's "
                         f"patches") from None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def backends() -> list[str]:
    return foveate.foveate_backends().decode().split(",")


_ggml_types: dict[str, int] = {}


def ggml_type(name: str) -> int:
    """A ggml type's number by its name ("bf16", "q8_0"), as libggml names it: llama-cpp-python's
    constants lack some (GGML_TYPE_BF16), and a table here could drift from the header."""
    if not _ggml_types:
        lib = ctypes.CDLL(str(LIB_DIR / "libggml-base.so"))
        lib.ggml_type_name.restype = ctypes.c_char_p
        lib.ggml_type_name.argtypes = [ctypes.c_int]
        for t in range(llama.GGML_TYPE_COUNT):   # the header's count (43 in 0.3.36)
            _ggml_types.setdefault((lib.ggml_type_name(t) or b"").decode(), t)
    try:
        return _ggml_types[name]
    except KeyError:
        raise ValueError(f"libggml has no type {name!r}") from None


# --- logging: llama.cpp and mtmd log through one callback; keep the recent lines --------------
class _LogCapture:
    """Collect llama.cpp / mtmd log lines so exceptions can quote the real cause."""

    def __init__(self, keep: int = 400):
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self._count = 0
        self._partial = ""
        self._lock = threading.Lock()
        self.verbose = bool(os.environ.get("FOVEATE_VERBOSE"))
        self._cb = llama.llama_log_callback(self._on_log)  # kept alive by self
        llama.llama_log_set(self._cb, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(self._cb, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(self._cb, ctypes.c_void_p(0))

    def _on_log(self, level, text, _user):
        s = text.decode("utf-8", errors="replace") if text else ""
        if self.verbose:
            os.write(2, s.encode())
        with self._lock:
            *full, self._partial = (self._partial + s).split("\n")
            for line in full:
                if line.strip():
                    self._lines.append((self._count, line.strip()))
                    self._count += 1

    def mark(self) -> int:
        """A position in the log; pass it to `cause_since` later."""
        with self._lock:
            return self._count

    def cause_since(self, mark: int) -> str:
        """The error-looking lines logged since `mark` (else the last ones), joined."""
        with self._lock:
            new = [text for i, text in self._lines if i >= mark]
        keys = ("error", "mismatch", "failed", "invalid", "unknown", "missing")
        bad = [t for t in new if any(k in t.lower() for k in keys)]
        return "; ".join(bad[-3:] or new[-2:])


log = _LogCapture()
llama.llama_backend_init()


# --- fixation C API (patches/0004, native/llama/llama-foveate.h) ----------------------------------
def _bind_fixation():
    lib = llama._lib
    i32, p = ctypes.c_int32, ctypes.c_void_p
    try:
        lib.llama_fixation_set.argtypes = [p, ctypes.c_float, i32, ctypes.POINTER(i32), i32, i32]
    except AttributeError:
        raise BuildError(f"{LIB_DIR}/libllama.so has no fixation API: reinstall foveate") from None
    lib.llama_fixation_set.restype = i32
    lib.llama_fixation_get_last.argtypes = [p, i32, ctypes.POINTER(i32), i32]
    lib.llama_fixation_get_last.restype = i32
    lib.llama_fixation_rows_exact.argtypes = [p, i32]   # drafts: rows verified as one-token steps
    lib.llama_fixation_rows_exact.restype = i32
    lib.llama_fixation_keep_row.argtypes = [p, i32, i32]
    lib.llama_fixation_keep_row.restype = i32
    lib.llama_fixation_get_stats.argtypes = [p, ctypes.POINTER(ctypes.c_double),
                                             ctypes.POINTER(ctypes.c_double),
                                             ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(i32), i32]
    lib.llama_fixation_get_stats.restype = i32
    lib.llama_fixation_set_dilation.argtypes = [p, i32]   # native/llama/llama-foveate.h
    lib.llama_fixation_set_dilation.restype = i32
    lib.llama_fixation_set_refresh.argtypes = [p, i32]     # native/llama/llama-foveate.h
    lib.llama_fixation_set_refresh.restype = i32
    lib.llama_fixation_set_sample.argtypes = [p, i32]      # native/llama/llama-foveate.h
    lib.llama_fixation_set_sample.restype = i32
    lib.llama_fixation_set_mass.argtypes = [p, ctypes.c_float]  # native/llama/llama-foveate.h
    lib.llama_fixation_set_mass.restype = i32
    lib.llama_fixation_hold.argtypes = [p, i32]           # native/llama/llama-foveate.h
    lib.llama_fixation_hold.restype = i32
    lib.llama_fixation_get_attended.argtypes = [p]
    lib.llama_fixation_get_attended.restype = ctypes.c_double
    lib.llama_fixation_get_host_us.argtypes = [p]
    lib.llama_fixation_get_host_us.restype = ctypes.c_double
    lib.llama_fixation_reset_stats.argtypes = [p]
    lib.llama_fixation_reset_stats.restype = None
    lib.llama_fixation_get_off_reason.argtypes = [p]
    lib.llama_fixation_get_off_reason.restype = ctypes.c_char_p
    lib.llama_fixation_active.argtypes = [p]
    lib.llama_fixation_active.restype = i32
    lib.llama_fixation_set_force_sparse.argtypes = [p, i32]   # a test hook
    lib.llama_fixation_set_force_sparse.restype = i32
    lib.llama_foveate_allow_position_gaps.argtypes = [p, ctypes.c_bool]   # patches/0006, native/llama/llama-foveate.h
    lib.llama_foveate_allow_position_gaps.restype = None
    return lib


fixation = _bind_fixation()


# --- token merging C API (patches/0007-0009, native/mtmd/mtmd-foveate.h) ---------------------------------
MERGE_OFF, MERGE_FIXED, MERGE_DYNAMIC = 0, 1, 2
MERGE_SCORES = {"norm": 0, "duplicates": 1}     # which rows a keep ratio keeps


def _bind_merge():
    lib = mtmd._libmtmd
    i32, p, dbl = ctypes.c_int32, ctypes.c_void_p, ctypes.c_double
    P = ctypes.POINTER
    try:
        lib.mtmd_merge_set.argtypes = [p, i32, dbl]
    except AttributeError:
        raise BuildError(f"{LIB_DIR}/libmtmd.so has no token-merge API: reinstall foveate") from None
    lib.mtmd_merge_set.restype = i32
    lib.mtmd_merge_get_last.argtypes = [p, P(i32), P(i32), P(dbl), P(dbl), P(dbl), P(dbl)]
    lib.mtmd_merge_get_last.restype = i32
    lib.mtmd_merge_get_kept.argtypes = [p, P(i32), i32]
    lib.mtmd_merge_get_kept.restype = i32
    lib.mtmd_merge_chunk_kept.argtypes = [p, P(i32), i32]    # native/mtmd/mtmd-foveate.h
    lib.mtmd_merge_chunk_kept.restype = i32
    lib.mtmd_merge_set_1d_positions.argtypes = [p, i32]      # native/mtmd/mtmd-merge-decode.h
    lib.mtmd_merge_set_1d_positions.restype = i32
    lib.mtmd_merge_get_1d_positions.argtypes = [p]
    lib.mtmd_merge_get_1d_positions.restype = i32
    if not hasattr(lib, "mtmd_merge_set_score"):
        raise BuildError(f"{LIB_DIR}/libmtmd.so predates the merge score API: reinstall foveate")
    if not hasattr(lib, "mtmd_merge_set_auto_floor"):
        raise BuildError(f"{LIB_DIR}/libmtmd.so predates the merge auto floor: reinstall foveate")
    lib.mtmd_merge_set_auto_floor.argtypes = [p, dbl]        # native/mtmd/mtmd-foveate.h
    lib.mtmd_merge_set_auto_floor.restype = i32
    lib.mtmd_merge_set_score.argtypes = [p, i32]             # native/mtmd/mtmd-merge-hooks.cpp
    lib.mtmd_merge_set_score.restype = i32
    lib.mtmd_merge_get_score.argtypes = [p]
    lib.mtmd_merge_get_score.restype = i32
    lib.mtmd_merge_rows.argtypes = [P(ctypes.c_float), i32, i32, P(ctypes.c_uint8),
                                    P(ctypes.c_float), i32, i32, i32, i32, dbl, i32, i32,
                                    P(ctypes.c_float), P(i32), P(dbl)]
    lib.mtmd_merge_rows.restype = i32
    if not hasattr(lib, "mtmd_foveate_set_weights_bf16"):
        raise BuildError(f"{LIB_DIR}/libmtmd.so predates the BF16 projector weights: reinstall foveate")
    lib.mtmd_foveate_set_weights_bf16.argtypes = [p, i32]   # native/mtmd/clip-weights.cpp
    lib.mtmd_foveate_set_weights_bf16.restype = i32
    lib.mtmd_foveate_weights_bf16_supported.argtypes = [p]
    lib.mtmd_foveate_weights_bf16_supported.restype = i32
    return lib


merge = _bind_merge()


def profile_eval_callback():
    """libfoveate's foveate_profile_eval as the eval callback type mtmd_context_params takes."""
    addr = ctypes.cast(foveate.foveate_profile_eval, ctypes.c_void_p).value
    return llama_cpp.ggml_backend_sched_eval_callback(addr)
