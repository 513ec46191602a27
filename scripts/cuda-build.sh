#!/usr/bin/env bash
# Full -DGGML_CUDA=ON build of foveate's libraries (the patched llama.cpp's ggml, ggml-cuda,
# llama, mtmd + native/ + libfoveate + foveate-test-ops), configured the way `pip install`
# with the README's CUDA flag configures it, but with plain cmake into a folder of its own.
# Meant for machines with nvcc and no GPU: it proves that everything compiles and links.
#
# A toolkit without cuBLAS (nvcc alone, e.g. assembled from NVIDIA's PyPI wheels) gets
# cuBLAS from NVIDIA's PyPI wheel (pip download; headers + libcublas/libcublasLt). A machine
# without the driver and without the toolkit's stubs/libcuda.so gets a stub libcuda.so.1
# exporting the driver functions ggml-cuda calls (each returns CUDA_ERROR_STUB_LIBRARY, as
# the toolkit's own stub does); at run time the real driver's libcuda.so.1 is loaded instead.
# What was used is printed and written to $WORK/build-report.txt. docs/build-cuda.md.
#
# usage: scripts/cuda-build.sh [--work DIR] [--arch 90] [-j N] [--tree] [--no-build]
#   --work DIR   everything goes here (default /tmp/foveate-cuda): src/ (a snapshot), build/, log
#   --arch A     CMAKE_CUDA_ARCHITECTURES (default 90)
#   -j N         parallel jobs (default 2); the build runs under nice -n 19
#   --tree       build the working tree as it is (default: a snapshot of git HEAD)
#   --no-build   configure only
# env: CUDA_HOME (default /usr/local/cuda), PYTHON (default .venv/bin/python, else python3),
#      FOVEATE_CACHE_DIR (the llama.cpp source cache, as for pip install),
#      CUBLAS_WHEEL (default: nvidia-cublas==13.0.2.14 for CUDA 13, nvidia-cublas-cu12 for 12)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=/tmp/foveate-cuda
ARCH=90
JOBS=2
TREE=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --work) WORK=$2; shift 2 ;;
        --arch) ARCH=$2; shift 2 ;;
        -j) JOBS=$2; shift 2 ;;
        --tree) TREE=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA_HOME/bin/nvcc
[ -x "$NVCC" ] || { echo "no nvcc at $NVCC (set CUDA_HOME)" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
CUDA_VER=$("$NVCC" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
CUDA_MAJOR=${CUDA_VER%%.*}
mkdir -p "$WORK"
REPORT=$WORK/build-report.txt
: > "$REPORT"
note() { echo "$*" | tee -a "$REPORT"; }
note "cuda-build: nvcc $CUDA_VER ($NVCC), arch $ARCH, -j $JOBS, python $PYTHON"

# --- source: a snapshot of HEAD (others may be editing the working tree) ----------------------
SRC=$WORK/src
NEW=$WORK/src.new
rm -rf "$NEW"
mkdir -p "$NEW" "$SRC"
if [ "$TREE" = 1 ]; then
    (cd "$ROOT" && tar --exclude=./build --exclude=./.venv --exclude=./.git -cf - .) | tar -xf - -C "$NEW"
    note "source: the working tree of $ROOT ($(git -C "$ROOT" rev-parse --short HEAD) + local changes)"
else
    git -C "$ROOT" archive HEAD | tar -xf - -C "$NEW"
    note "source: git HEAD $(git -C "$ROOT" rev-parse --short HEAD) of $ROOT"
fi
# into $SRC touching only files whose content changed, so a rebuild is incremental (the full
# build is ~40 minutes on 2 cores; a change to native/ then recompiles what it touches)
"$PYTHON" - "$NEW" "$SRC" <<'EOF'
import filecmp, os, shutil, sys
new, src = sys.argv[1], sys.argv[2]
for d, dirs, files in os.walk(new):
    out = os.path.join(src, os.path.relpath(d, new))
    os.makedirs(out, exist_ok=True)
    for f in files:
        a, b = os.path.join(d, f), os.path.join(out, f)
        if not os.path.isfile(b) or not filecmp.cmp(a, b, shallow=False):
            shutil.copy2(a, b)
for d, dirs, files in os.walk(src, topdown=False):
    for f in files:
        if not os.path.exists(os.path.join(new, os.path.relpath(os.path.join(d, f), src))):
            os.remove(os.path.join(d, f))
EOF
rm -rf "$NEW"

EXTRA=()
RPATH_LINK=""
# --- cuBLAS -----------------------------------------------------------------------------------
if [ -f "$CUDA_HOME/include/cublas_v2.h" ] && ls "$CUDA_HOME"/lib64/libcublas.so* >/dev/null 2>&1; then
    note "cuBLAS: the toolkit's ($CUDA_HOME)"
else
    if [ -z "${CUBLAS_WHEEL:-}" ]; then
        case "$CUDA_MAJOR" in
            13) CUBLAS_WHEEL="nvidia-cublas==13.0.2.14" ;;
            12) CUBLAS_WHEEL="nvidia-cublas-cu12" ;;
            *) echo "no cuBLAS wheel known for CUDA $CUDA_VER: set CUBLAS_WHEEL" >&2; exit 1 ;;
        esac
    fi
    WHEELS=$WORK/wheels
    mkdir -p "$WHEELS"
    if ! ls "$WHEELS"/nvidia_cublas*.whl >/dev/null 2>&1; then
        "$PYTHON" -m pip download --no-deps -d "$WHEELS" "$CUBLAS_WHEEL" 2>&1 | grep -v "^WARNING: Location" || true
    fi
    WHL=$(ls "$WHEELS"/nvidia_cublas*.whl | head -1)
    CUB=$WORK/cublas
    # unpacked once: fresh header timestamps would recompile every CUDA object
    [ -f "$CUB/.unpacked" ] || { rm -rf "$CUB" && mkdir -p "$CUB" && "$PYTHON" - "$WHL" "$CUB" <<'EOF'
import sys, zipfile, pathlib
whl, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        p = pathlib.PurePosixPath(n)
        if len(p.parts) >= 3 and p.parts[0] == "nvidia" and p.parts[-2] in ("include", "lib"):
            dst = out / p.parts[-2] / p.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(z.read(n))
EOF
    for l in cublas cublasLt; do
        so=$(ls "$CUB"/lib/lib$l.so.* | head -1)
        ln -sf "$(basename "$so")" "$CUB/lib/lib$l.so"
    done
    touch "$CUB/.unpacked"; }
    note "cuBLAS: $(basename "$WHL") from PyPI, unpacked in $CUB"
    EXTRA+=("-DCUDA_cublas_LIBRARY=$CUB/lib/libcublas.so" "-DCUDA_cublasLt_LIBRARY=$CUB/lib/libcublasLt.so"
            "-DCMAKE_CUDA_FLAGS=-I$CUB/include" "-DCMAKE_CXX_FLAGS=-I$CUB/include")
    export LIBRARY_PATH="$CUB/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
    RPATH_LINK=$CUB/lib
fi

# --- the driver library (libcuda): the toolkit's stub, the installed driver, or a stub of ours --
DRV=""
for cand in "$CUDA_HOME/lib64/stubs/libcuda.so" "$CUDA_HOME/targets/x86_64-linux/lib/stubs/libcuda.so"; do
    [ -f "$cand" ] && DRV=$cand && break
done
[ -z "$DRV" ] && DRV=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so(\.1)? /{print $NF; exit}')
STUB_SYMS=""
if [ -n "$DRV" ]; then
    note "libcuda: $DRV"
else
    # the driver API functions ggml-cuda calls (VMM pool, device attributes, error strings)
    PREP=$WORK/prep
    mkdir -p "$PREP"
    STUB_DIR=$WORK/libcuda-stub
    mkdir -p "$STUB_DIR"
    # the patched source is prepared by the configure step below; its ggml-cuda.cu is scanned
    # after it (the stub must exist before configure: FindCUDAToolkit looks for it)
    STUB_SYMS=$(grep -ohE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' \
                    /dev/null "${FOVEATE_CACHE_DIR:-$HOME/.cache/foveate}"/llama_cpp_python-*/vendor/llama.cpp/ggml/src/ggml-cuda/*.cu* \
                    2>/dev/null | sed 's/[[:space:](]//g' | grep -v '^cuBLAS$' | sort -u | tr '\n' ' ' || true)
    [ -n "$STUB_SYMS" ] || STUB_SYMS="cuDeviceGet cuDeviceGetAttribute cuGetErrorString cuMemAddressFree cuMemAddressReserve cuMemCreate cuMemGetAllocationGranularity cuMemMap cuMemRelease cuMemSetAccess cuMemUnmap"
    : > "$STUB_DIR/libcuda-stub.c"
    for s in $STUB_SYMS; do
        echo "int $s(void) { return 34; /* CUDA_ERROR_STUB_LIBRARY */ }" >> "$STUB_DIR/libcuda-stub.c"
    done
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB_DIR/libcuda.so" "$STUB_DIR/libcuda-stub.c"
    ln -sf libcuda.so "$STUB_DIR/libcuda.so.1"   # what -rpath-link looks for: the soname
    DRV=$STUB_DIR/libcuda.so
    note "libcuda: STUB built here ($DRV, soname libcuda.so.1): $STUB_SYMS"
fi
EXTRA+=("-DCUDA_cuda_driver_LIBRARY=$DRV")
# executables linked against libggml-cuda (foveate-test-ops) must find its libcublas and libcuda
# at link time when they are not in the linker's default paths
RPATH_LINK=${RPATH_LINK:+$RPATH_LINK:}$(dirname "$DRV")
EXTRA+=("-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$RPATH_LINK")

# --- configure + build ------------------------------------------------------------------------
B=$WORK/build
mkdir -p "$B"
LOG=$WORK/build.log
t0=$(date +%s)
note "configure: cmake -S $SRC -B $B -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH ${EXTRA[*]}"
nice -n 19 cmake -S "$SRC" -B "$B" -G Ninja -DPython_EXECUTABLE="$PYTHON" \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DCUDAToolkit_ROOT="$CUDA_HOME" "${EXTRA[@]}" > "$LOG" 2>&1 \
    || { tail -30 "$LOG"; note "RESULT: configure FAILED (log $LOG)"; exit 1; }
t1=$(date +%s)
note "configure: $((t1 - t0)) s"
grep -E "CUDA Toolkit found|Using CMAKE_CUDA_ARCHITECTURES|CUDA host compiler" "$LOG" | tee -a "$REPORT" || true
if [ -n "$STUB_SYMS" ]; then
    # the symbols the stub must cover, from the tree the build really uses
    want=$(grep -ohE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' "$B"/llama.cpp/ggml/src/ggml-cuda/*.cu* \
           | sed 's/[[:space:](]//g' | grep -v '^cuBLAS$' | sort -u | tr '\n' ' ' || true)
    [ "$want" = "$STUB_SYMS" ] || note "warning: stub symbols differ from the patched tree's: $want"
fi
[ "$BUILD" = 1 ] || { note "RESULT: configured only"; exit 0; }

note "build: nice -n 19 cmake --build $B --target foveate_libs -j $JOBS (log $LOG)"
if ! nice -n 19 cmake --build "$B" --target foveate_libs -j "$JOBS" >> "$LOG" 2>&1; then
    t2=$(date +%s)
    grep -E "error|FAILED" "$LOG" | head -30
    note "RESULT: build FAILED after $((t2 - t1)) s (log $LOG)"
    exit 1
fi
t2=$(date +%s)
note "build: $((t2 - t1)) s ($(( (t2 - t1) / 60 )) min $(( (t2 - t1) % 60 )) s), $(ninja -C "$B" -t targets all 2>/dev/null | grep -c '\.cu\.o:' || true) CUDA objects"
ls -la "$B"/bin/ | grep -E "\.so|foveate-test-ops" | awk '{print "  " $5 "  " $9}' | tee -a "$REPORT"
# every undefined symbol of libggml-cuda resolves (the executable's link already checked it;
# this names the CUDA libraries it will load)
if command -v ldd >/dev/null; then
    LD_LIBRARY_PATH="$(dirname "$DRV")${CUB:+:$CUB/lib}" ldd -r "$B/bin/libggml-cuda.so" 2>&1 \
        | grep -E "cuda|cublas|undefined" | sed 's/^/  /' | tee -a "$REPORT"
fi
note "RESULT: OK (compile + link of -DGGML_CUDA=ON for sm_$ARCH)"
