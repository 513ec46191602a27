"""`foveate bench --stock` where stock llama.cpp crashes (issue 21, item 6): on an Intel Xeon
with AMX the unpatched llama-bench dies on quantized prefill. The bench reports that as a row,
keeps the other rows, and times stock + patch 0001 alone in its place. Stand-in llama-bench
scripts play stock (dying by a signal) and stock + 0001 (printing llama-bench's JSON); the real
crash is what the README's `--stock` block meets on such a machine."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from foveate.instruments import bench, stock

REPO = Path(__file__).resolve().parents[1]


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _fake_benches(tmp_path: Path, monkeypatch, stock_body: str, fixed_body: str) -> None:
    dying = _script(tmp_path / "stock-llama-bench", stock_body)
    fixed = _script(tmp_path / "fixed-llama-bench", fixed_body)
    monkeypatch.setattr(stock, "llama_bench", lambda jobs=None, with_0001=False:
                        fixed if with_0001 else dying)


JSON = "echo '[{\"avg_ts\": 2000.0}]'\n"


def test_cpu_flags_are_read_for_amx():
    assert stock.cpu_has_amx("flags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8\n")
    assert not stock.cpu_has_amx("flags\t\t: fpu sse avx2 avx512f\n")


@pytest.mark.parametrize("sig, amx, text", [
    (signal.SIGILL, True, "stock llama.cpp crashed (SIGILL, the AMX tile-config bug)"),
    (signal.SIGSEGV, True, "stock llama.cpp crashed (SIGSEGV, the AMX tile-config bug)"),
    (signal.SIGSEGV, False, "stock llama.cpp crashed (SIGSEGV)"),
])
def test_a_crash_is_named_by_its_signal(sig, amx, text):
    assert stock.crash_reason(-int(sig), amx) == (sig.name, text)


def test_a_crashing_stock_is_a_row_and_stock_plus_0001_stands_in(tmp_path, monkeypatch):
    _fake_benches(tmp_path, monkeypatch, "kill -ILL $$\n", JSON)
    monkeypatch.setattr(stock, "cpu_has_amx", lambda cpuinfo=None: True)
    rows = bench.stock_rows("model.gguf", 4096, 32, 2, 1, None)
    assert [r.config for r in rows] == [
        "stock llama.cpp crashed (SIGILL, the AMX tile-config bug)",
        "stock llama.cpp + patch 0001 only (llama-bench)"]
    assert rows[0].crashed and not rows[1].crashed
    assert rows[1].prefill_tok_s == 2000.0 and rows[1].prefill_ms == pytest.approx(4096 / 2.0)
    ours = bench.BenchRow("foveate, merge off", 4096, 0.0, 1000.0, 4096.0, 20.0, 1600.0, 0.0,
                          4096, 4096)
    merged = bench.BenchRow("foveate, merge 0.84", 4096, 0.0, 800.0, 5120.0, 18.0, 1777.0, 3.0,
                            3441, 3441)
    table = bench.format_table(rows + [ours, merged]).splitlines()
    crashed = next(line for line in table if "crashed" in line)
    assert [c.strip() for c in crashed.strip("|").split("|")][2:] == ["-"] * 7
    assert "1.25x" in next(line for line in table if "merge 0.84" in line)


def test_a_stock_that_runs_is_one_row(tmp_path, monkeypatch):
    _fake_benches(tmp_path, monkeypatch, JSON, "exit 3\n")
    rows = bench.stock_rows("model.gguf", 512, 16, 2, 1, None)
    assert [r.config for r in rows] == ["stock llama.cpp (llama-bench)"]


def test_a_stock_that_fails_without_a_signal_is_an_error(tmp_path, monkeypatch):
    _fake_benches(tmp_path, monkeypatch, "echo 'error: failed to load model' >&2; exit 1\n", JSON)
    with pytest.raises(RuntimeError, match="failed to load model"):
        bench.stock_rows("model.gguf", 512, 16, 2, 1, None)


def test_patch_0001_is_applied_for_one_build_and_reverted(tmp_path):
    """The reference's source: the stock tree with patch 0001 alone applied while its binary
    builds; the tree is pristine again afterwards, also when the build fails."""
    try:
        src = stock.stock_source()
    except FileNotFoundError:
        pytest.skip("no cached llama.cpp source")
    mmq = Path("ggml/src/ggml-cpu/amx/mmq.cpp")
    tree = tmp_path / "llama.cpp"
    (tree / mmq).parent.mkdir(parents=True)
    (tree / mmq).write_bytes((src / mmq).read_bytes())
    pristine = (tree / mmq).read_text()
    assert '"ldtilecfg %0"' not in pristine
    with stock.patch_0001_applied(tree):
        assert '"ldtilecfg %0"' in (tree / mmq).read_text()
    assert (tree / mmq).read_text() == pristine
    with pytest.raises(subprocess.CalledProcessError):
        with stock.patch_0001_applied(tree):
            subprocess.run(["false"], check=True)   # a failed build
    assert (tree / mmq).read_text() == pristine
    with stock.patch_0001_applied(tree):
        stock._revert_leftover_0001(tree)   # as after a killed 0001 build
        assert (tree / mmq).read_text() == pristine
    stock._revert_leftover_0001(tree)       # pristine: nothing to revert
    assert (tree / mmq).read_text() == pristine


def test_the_stock_copy_is_the_pristine_source(tmp_path, monkeypatch):
    try:
        src = stock.stock_source()
    except FileNotFoundError:
        pytest.skip("no cached llama.cpp source")
    monkeypatch.setenv("FOVEATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FOVEATE_SDIST_DIR", str(src.parents[1]))
    out = stock.stock_tree()
    assert out.is_relative_to(tmp_path) and stock.stock_tree() == out   # made once
    d = subprocess.run(["diff", "-rq", str(src), str(out)], capture_output=True, text=True)
    assert sorted(d.stdout.splitlines()) == sorted([
        f"Only in {out}: .foveate-stock-copy",
        f"Only in {src}: .git"])   # a submodule link into llama-cpp-python's repo: not copied
