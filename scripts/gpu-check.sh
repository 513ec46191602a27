#!/usr/bin/env bash
# foveate's GPU check, in one go on a machine with an NVIDIA GPU (issue 21; docs/build-cuda.md):
#   gpu           nvidia-smi sees a GPU
#   build         CMAKE_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=A" pip install . into a
#                 venv, build folder build/cuda-<wheel tag> (kept: a rerun recompiles only what
#                 changed); then the installed libraries must list the CUDA backend
#   cuda-device   the CUDA backend sees the GPU (llama_supports_gpu_offload)
#   ops-cuda0     foveate-test-ops -b CUDA0: fixation and merge ops against float64 references
#   ratio1-ngl99  fixation ratio 1 and merge keep ratio 1 bit-identical to off, -ngl 99
#                 (tests/test_cuda_offload.py -k ratio_one)
#   pytest-cuda   pytest -k "cuda and not ratio_one" over the test files that name CUDA
#   bench-fixation, bench-merge   `foveate bench -ngl 99` rows (fixation off/0.05/0.2; merge
#                 off/0.84/auto), tables in the results file
#   bench-draft   `foveate bench --draft -ngl 99`: t(k) for k = 1..32 rows and the draft rows
#   kv-q8_0-off   a q8_0 KV cache on the GPU turns fixation off with a stat saying so (f16 keeps it)
#   racecheck     (with --racecheck) the op tests under compute-sanitizer's racecheck
# Each step fails soft: a failure is recorded and the next step runs. GPU steps are SKIPPED
# when there is no GPU (the gpu step then FAILS). Prints one table (check, result, seconds,
# detail), writes it with the bench tables to --out; exits 1 if any step failed.
#
# usage: scripts/gpu-check.sh [options]
#   --venv DIR         venv to build into and test with (default .venv-cuda; made with
#                      --system-site-packages if missing; an existing one is reused as it is)
#   --python PY        interpreter that makes the venv (default python3)
#   --skip-build       test the venv as it is (its foveate must be a CUDA build)
#   --arch A           CMAKE_CUDA_ARCHITECTURES (default 90)
#   --pip-args "..."   extra pip install arguments (offline: "--no-index --find-links DIR";
#                      the llama.cpp source comes from FOVEATE_CACHE_DIR / FOVEATE_SDIST as usual)
#   --model M          bench model (default models/reader/foveate-reader-q8_0.gguf)
#   --mmproj P         bench projector (default models/reader/foveate-reader-mmproj-f16.gguf)
#   --image IMG        merge bench page (default models/reader/sample-page.png)
#   --image-tokens N   fixation bench's synthetic image tokens (default 4096)
#   --racecheck        add the racecheck step (slow: minutes)
#   --out FILE         results (default gpu-check-results.md)
#   --log FILE         every step's output (default gpu-check.log)
#   --no-gpu-ok        no GPU is not a failure (to test this script on a machine without one)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/.venv-cuda
PY=python3
SKIP_BUILD=0
ARCH=90
PIP_ARGS=""
MODEL=$ROOT/models/reader/foveate-reader-q8_0.gguf
MMPROJ=$ROOT/models/reader/foveate-reader-mmproj-f16.gguf
IMAGE=$ROOT/models/reader/sample-page.png
IMAGE_TOKENS=4096
RACECHECK=0
OUTF=gpu-check-results.md
LOGF=gpu-check.log
NO_GPU_OK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) VENV=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --skip-build) SKIP_BUILD=1; shift ;;
        --arch) ARCH=$2; shift 2 ;;
        --pip-args) PIP_ARGS=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --mmproj) MMPROJ=$2; shift 2 ;;
        --image) IMAGE=$2; shift 2 ;;
        --image-tokens) IMAGE_TOKENS=$2; shift 2 ;;
        --racecheck) RACECHECK=1; shift ;;
        --out) OUTF=$2; shift 2 ;;
        --log) LOGF=$2; shift 2 ;;
        --no-gpu-ok) NO_GPU_OK=1; shift ;;
        -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
case "$VENV" in /*) ;; *) VENV=$PWD/$VENV ;; esac
VPY=$VENV/bin/python
TMPD=$(mktemp -d)
trap 'rm -rf "$TMPD"' EXIT
: > "$LOGF"
NAMES=(); RESULTS=(); SECS=(); DETAILS=()
EXTRA_MD=""
HAVE_GPU=0
FOVEATE_OK=0
ANY_FAIL=0

# run_step NAME FUNC: FUNC's output goes to the log; it returns 0 PASS, 1 FAIL, 3 SKIP and
# may write a one-line detail to $TMPD/detail
run_step() {
    local name=$1 fn=$2 t0 t1 rc res detail
    printf '\n===== %s =====\n' "$name" >> "$LOGF"
    printf '%-15s ... ' "$name"
    : > "$TMPD/detail"
    t0=$(date +%s.%N)
    ( cd "$ROOT" && "$fn" ) >> "$LOGF" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    case $rc in 0) res=PASS ;; 3) res=SKIP ;; *) res=FAIL; ANY_FAIL=1 ;; esac
    detail=$(head -c 300 "$TMPD/detail" | tr '\n|' ' /')
    NAMES+=("$name"); RESULTS+=("$res"); SECS+=("$(printf '%.1f' "$(echo "$t1 - $t0" | bc)")"); DETAILS+=("$detail")
    echo "$res ${SECS[-1]} s  $detail"
    printf '===== %s: %s (rc %s) =====\n' "$name" "$res" "$rc" >> "$LOGF"
}
detail() { echo "$*" > "$TMPD/detail"; }
# the last lines of a step's own output, as its detail on failure
tail_detail() { tail -n "${2:-3}" "$1" | tr -s ' \n' ' ' > "$TMPD/detail"; }
need_gpu() { [ "$HAVE_GPU" = 1 ] || { detail "no GPU (see the gpu step)"; return 3; }; }
need_foveate() { [ "$FOVEATE_OK" = 1 ] || { detail "no CUDA build of foveate in $VENV (see the build step)"; return 3; }; }

# cuBLAS for the build and at run time: the toolkit's, else NVIDIA's wheel in site-packages
find_cublas() {
    local cuda_home=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)")")}
    CUDA_HOME=$cuda_home
    if [ -f "$cuda_home/include/cublas_v2.h" ]; then CUBLAS_INC=""; CUBLAS_LIB=""; return 0; fi
    local p d
    for p in "$VPY" "$PY" python3; do
        d=$("$p" - 2>/dev/null <<'EOF'
import importlib.util, pathlib
for mod in ("nvidia.cu13", "nvidia.cublas"):
    try:
        spec = importlib.util.find_spec(mod)
    except Exception:
        spec = None
    if spec and spec.submodule_search_locations:
        d = pathlib.Path(list(spec.submodule_search_locations)[0])
        if (d / "include" / "cublas_v2.h").exists():
            print(d)
            break
EOF
)
        [ -n "$d" ] && break
    done
    [ -n "$d" ] || return 1
    CUBLAS_INC=$d/include
    CUBLAS_LIB=$d/lib
    return 0
}
CUBLAS_INC=""; CUBLAS_LIB=""
find_cublas || true
if [ -n "$CUBLAS_LIB" ]; then
    export LD_LIBRARY_PATH="$CUBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# --- the steps ----------------------------------------------------------------------------------
step_gpu() {
    if ! command -v nvidia-smi >/dev/null; then
        detail "nvidia-smi missing: no NVIDIA driver, no GPU"
        [ "$NO_GPU_OK" = 1 ] && return 3 || return 1
    fi
    if ! nvidia-smi -L > "$TMPD/smi" 2>&1 || ! grep -q "^GPU" "$TMPD/smi"; then
        cat "$TMPD/smi"; tail_detail "$TMPD/smi" 2
        [ "$NO_GPU_OK" = 1 ] && return 3 || return 1
    fi
    cat "$TMPD/smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | tee "$TMPD/q"
    detail "$(head -1 "$TMPD/q" 2>/dev/null || head -1 "$TMPD/smi")"
    return 0
}

step_build() {
    if [ "$SKIP_BUILD" = 1 ]; then
        detail "--skip-build: $VENV as it is"
        return 3
    fi
    command -v nvcc >/dev/null || [ -x "$CUDA_HOME/bin/nvcc" ] || { detail "nvcc not found (CUDA toolkit)"; return 1; }
    export PATH="$CUDA_HOME/bin:$PATH"
    if [ ! -x "$VPY" ]; then
        "$PY" -m venv --system-site-packages "$VENV" || { detail "cannot make the venv $VENV"; return 1; }
    fi
    local cm="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$ARCH"
    if [ -n "$CUBLAS_INC" ]; then
        # a toolkit without cuBLAS: NVIDIA's wheel (docs/build-cuda.md)
        local lt
        lt=$(ls "$CUBLAS_LIB"/libcublasLt.so* | head -1)
        cm="$cm -DCUDA_cublas_LIBRARY=$(ls "$CUBLAS_LIB"/libcublas.so* | head -1) -DCUDA_cublasLt_LIBRARY=$lt"
        cm="$cm -DCMAKE_CUDA_FLAGS=-I$CUBLAS_INC"
        echo "cuBLAS from $CUBLAS_INC/.."
    fi
    local iso=""
    "$VPY" -c "import scikit_build_core" 2>/dev/null && iso="--no-build-isolation"
    echo "CMAKE_ARGS=\"$cm\" $VPY -m pip install $iso $PIP_ARGS -C build-dir=build/cuda-{wheel_tag} ."
    # shellcheck disable=SC2086
    CMAKE_ARGS="$cm" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        timeout 1800 "$VPY" -m pip install $iso $PIP_ARGS -C "build-dir=build/cuda-{wheel_tag}" . \
        > "$TMPD/pip" 2>&1
    local rc=$?
    grep -v "^WARNING: Location" "$TMPD/pip"
    if [ $rc != 0 ]; then
        grep -E "error|Error|FAILED" "$TMPD/pip" | tail -3 | tr -s ' \n' ' ' > "$TMPD/detail"
        [ -s "$TMPD/detail" ] || tail_detail "$TMPD/pip"
        return 1
    fi
    detail "installed into $VENV (arch $ARCH)"
}

# the installed foveate's backends (run after build, or with --skip-build)
step_cuda_device() {
    if [ ! -x "$VPY" ]; then detail "no venv at $VENV"; return 1; fi
    "$VPY" - > "$TMPD/be" 2>&1 <<'EOF'
from foveate.native import bindings as B
print("backends", ",".join(B.backends()))
print("gpu_offload", bool(B.llama.llama_supports_gpu_offload()))
print("build_info", B.llama_build_info())
EOF
    local rc=$?
    cat "$TMPD/be"
    if [ $rc != 0 ]; then tail_detail "$TMPD/be" 2; return 1; fi
    if ! grep -q "^backends.*CUDA" "$TMPD/be"; then
        detail "this foveate has no CUDA backend: $(grep ^backends "$TMPD/be")"
        return 1
    fi
    FOVEATE_OK=1
    echo 1 > "$TMPD/foveate_ok"
    if ! grep -q "^gpu_offload True" "$TMPD/be"; then
        detail "CUDA backend built, but it sees no GPU"
        [ "$HAVE_GPU" = 1 ] && return 1 || return 3
    fi
    detail "$(grep ^backends "$TMPD/be"), GPU offload on"
}

step_ops() {
    need_gpu || return 3; need_foveate || return 3
    local bin
    bin=${FOVEATE_TEST_OPS:-$("$VPY" -c 'import foveate, pathlib; print(pathlib.Path(foveate.__file__).parent / "_bin" / "foveate-test-ops")')}
    [ -x "$bin" ] || { detail "foveate-test-ops not found ($bin)"; return 1; }
    timeout 600 "$bin" -b CUDA0 > "$TMPD/ops" 2>&1
    local rc=$?
    cat "$TMPD/ops"
    if [ $rc = 77 ]; then detail "rc 77: no CUDA backend or no GPU seen by the op tests"; return 1; fi
    if [ $rc != 0 ] || ! grep -q " 0 failed" "$TMPD/ops"; then tail_detail "$TMPD/ops"; return 1; fi
    detail "$(grep -E '[0-9]+ passed' "$TMPD/ops" | tail -1)"
}

# pytest with a strict reading on a GPU machine: a skipped CUDA test is a failure there
run_pytest() {
    local out=$1; shift
    timeout 900 "$VPY" -m pytest -q -rs -p no:cacheprovider "$@" > "$out" 2>&1
    local rc=$?
    cat "$out"
    local summary
    summary=$(grep -E "[0-9]+ (passed|failed|skipped|error|deselected)" "$out" | tail -1)
    detail "$summary"
    [ $rc = 0 ] || return 1
    if [ "$HAVE_GPU" = 1 ] && grep -qE "[0-9]+ skipped" <<< "$summary"; then
        detail "skipped on a GPU machine: $summary"
        return 1
    fi
    return 0
}

step_ratio1() {
    need_gpu || return 3; need_foveate || return 3
    run_pytest "$TMPD/r1" tests/test_cuda_offload.py -k ratio_one
}

step_pytest_cuda() {
    need_foveate || return 3
    local files
    files=$(grep -l -i cuda tests/test_*.py | tr '\n' ' ')
    # shellcheck disable=SC2086
    run_pytest "$TMPD/pc" $files -k "cuda and not ratio_one"
}

bench() {
    local out=$1; shift
    echo "foveate bench $*"
    timeout 600 "$VENV/bin/foveate" bench "$@" > "$out" 2>&1
    local rc=$?
    cat "$out"
    if [ $rc != 0 ]; then tail_detail "$out"; return 1; fi
    { echo; echo "### foveate bench $*"; echo; echo '```'; grep -v "^\s*$" "$out"; echo '```'; } >> "$TMPD/extra.md"
    detail "$(grep -cE '^\|? *(foveate|fixation|merge|stock|none|its|an |self|ms)' "$out") rows (table below)"
}

step_bench_fixation() {
    need_gpu || return 3; need_foveate || return 3
    bench "$TMPD/bf" -m "$MODEL" --image-tokens "$IMAGE_TOKENS" -n 32 -r 3 --fixation 0.05,0.2 -ngl 99
}

step_bench_merge() {
    need_gpu || return 3; need_foveate || return 3
    bench "$TMPD/bm" -m "$MODEL" --mmproj "$MMPROJ" --image "$IMAGE" -n 32 -r 3 --merge 0.84,auto -ngl 99
}

# drafts on the GPU: the cost of verifying k = 1..32 rows in one step (expected ~one step for
# tens of rows, never measured) and the draft rows of the bundled reader
step_bench_draft() {
    need_gpu || return 3; need_foveate || return 3
    bench "$TMPD/bd" -m "$MODEL" --mmproj "$MMPROJ" --image "$IMAGE" --draft -n 200 -r 3 -ngl 99
}

# quantized KV on the GPU: the CUDA fixation ops take F16/F32 K/V only, so fixation must turn
# itself off (one warning, Stats.fixation_off) rather than bounce every layer to the CPU
step_kv_quantized() {
    need_gpu || return 3; need_foveate || return 3
    "$VPY" - "$MODEL" "$MMPROJ" "$IMAGE" > "$TMPD/kv" 2>&1 <<'EOF'
import sys
from foveate.engine.core import Engine
from foveate.inputs.images import load_page
model, mmproj, image = sys.argv[1:4]
page = load_page(image)
for kv in ("f16", "q8_0"):
    eng = Engine(model, mmproj, n_gpu_layers=99, n_ctx=4096, fixation=0.05, flash_attn=True,
                 cache_type_k=kv, cache_type_v=kv)
    r = eng.read(page, max_tokens=32)
    print(kv, "fixation_off:", repr(r.stats.fixation_off), "attended:", r.stats.visual_tokens_attended,
          "of", r.stats.image_tokens)
    assert bool(r.stats.fixation_off) == (kv != "f16"), (kv, r.stats.fixation_off)
    eng.close()
print("KV-OK")
EOF
    local rc=$?
    cat "$TMPD/kv"
    grep -q KV-OK "$TMPD/kv" || { tail_detail "$TMPD/kv"; return 1; }
    detail "$(grep '^q8_0' "$TMPD/kv")"
}

step_racecheck() {
    need_gpu || return 3; need_foveate || return 3
    command -v compute-sanitizer >/dev/null || { detail "compute-sanitizer not found"; return 1; }
    local bin
    bin=${FOVEATE_TEST_OPS:-$("$VPY" -c 'import foveate, pathlib; print(pathlib.Path(foveate.__file__).parent / "_bin" / "foveate-test-ops")')}
    timeout 1200 compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 1 \
        "$bin" -b CUDA0 > "$TMPD/rc" 2>&1
    local rc=$?
    tail -40 "$TMPD/rc"
    detail "$(grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$TMPD/rc" | tail -1)"
    [ $rc = 0 ]
}

echo "gpu-check: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)), venv $VENV, log $LOGF"
run_step gpu step_gpu
[ "${RESULTS[0]}" = PASS ] && HAVE_GPU=1
run_step build step_build
run_step cuda-device step_cuda_device
[ -f "$TMPD/foveate_ok" ] && FOVEATE_OK=1
run_step ops-cuda0 step_ops
run_step ratio1-ngl99 step_ratio1
run_step pytest-cuda step_pytest_cuda
run_step bench-fixation step_bench_fixation
run_step bench-merge step_bench_merge
run_step bench-draft step_bench_draft
run_step kv-q8_0-off step_kv_quantized
[ "$RACECHECK" = 1 ] && run_step racecheck step_racecheck

{
    echo "# foveate GPU check"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null), host $(hostname)"
    echo
    echo "| check | result | seconds | detail |"
    echo "|---|---|---|---|"
    for i in "${!NAMES[@]}"; do
        echo "| ${NAMES[$i]} | ${RESULTS[$i]} | ${SECS[$i]} | ${DETAILS[$i]} |"
    done
    [ -f "$TMPD/extra.md" ] && cat "$TMPD/extra.md"
} > "$OUTF"
echo
sed -n '/^| check/,/^$/p' "$OUTF"
echo "results: $OUTF, log: $LOGF"
exit $ANY_FAIL
